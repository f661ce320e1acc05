"""Decoding a recording segment by segment with a :class:`~espnet.asr.pretrained.Recognizer`:
which streams it reads, where the segments are, and their texts (segments of similar length
decoded together by the batched decoder; each gets the text it gets alone)."""

import os
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from tqdm import tqdm

from datamodule.media import SAMPLE_RATE, VIDEO_FPS
from espnet.asr.repetition import GuardOptions, HypothesisCheck
from espnet.asr.transcription.media import Media
from espnet.asr.transcription.segments import Segment, VadOptions, fixed_windows, speech_segments

WHISPER_WINDOW = 30.0  # seconds: Whisper's input window
DEFAULT_MAX_SEGMENT = 20.0  # seconds: our models (trained on utterances of a few seconds)


@dataclass
class SegmentText:
    """The text of one segment (seconds from the start of the recording), the streams read,
    what the repetition guard found (:mod:`espnet.asr.repetition`) and the temperature of
    the kept hypothesis (0.0: the search; above: the fallback's sampling)."""

    start: float
    end: float
    text: str
    streams: Tuple[str, ...]
    check: Optional[HypothesisCheck] = None
    temperature: float = 0.0


@dataclass
class Transcript:
    """A recording's segments in time order, its duration in seconds and, for a video-only
    model, the stretches without a face (not decoded)."""

    path: str
    seconds: float
    segments: List[SegmentText] = field(default_factory=list)
    gaps: List[Segment] = field(default_factory=list)  # stretches a video-only model could not read (no face)

    @property
    def repeating(self) -> int:
        """Segments whose hypothesis the guard finds repeating."""
        return sum(bool(s.check is not None and s.check.repeating) for s in self.segments)

    @property
    def text(self) -> str:
        """The whole text: the segments' texts joined by spaces (empty ones left out)."""
        return " ".join(s.text for s in self.segments if s.text)


@dataclass(frozen=True)
class SegmentOptions:
    """How a recording is cut: voice activity (``vad``; its ``max_segment`` is raised to
    Whisper's 30 s for a Whisper decoder unless ``max_segment`` is given) where there is
    audio, windows of ``video_window`` seconds overlapping by ``video_overlap`` for video alone."""

    vad: VadOptions = VadOptions()
    max_segment: float = 0.0  # 0: 20 s, 30 s for a Whisper decoder
    video_window: float = 10.0
    video_overlap: float = 2.0


def streams_to_read(recognizer: Any, media_path: str, has_audio: bool, has_video: bool,
                    drop_stream: Optional[str] = None) -> Tuple[str, ...]:
    """The streams of the file that the model reads. An audio-visual model reads the one stream
    a file has when the model has a learned stand-in for the other; otherwise a stream the model
    needs and the file lacks is an error naming the file. ``drop_stream`` (``video`` /
    ``audio``, as ``eval.py --drop-stream``) leaves that stream of an audio-visual model with
    stand-ins unread."""
    have = {"audio": has_audio, "video": has_video}
    model = recognizer.model
    wanted = tuple(recognizer.streams)
    if drop_stream is not None:
        if not can_drop_video_or_audio(recognizer):
            raise ValueError(f"--drop-stream {drop_stream}: only an audio-visual model with stand-ins for a missing "
                             f"stream decodes without one; this is {model.config.describe()}")
        wanted = tuple(s for s in wanted if s != drop_stream)
    present = tuple(s for s in wanted if have[s])
    lacking = [s for s in wanted if not have[s]]
    if not lacking:
        return present
    if present and can_drop_video_or_audio(recognizer):
        return present
    holds = " and ".join(s for s in ("audio", "video") if have[s]) or "no stream"
    need = " and ".join(wanted)
    why = "" if model.modality != "audiovisual" else " (this model has no stand-in for a missing stream)"
    raise ValueError(f"{media_path}: the model reads {need} but the file holds only {holds}{why}")


FACE_GAP = 0.5  # seconds: shorter stretches without a face are bridged by the cropper's interpolation
MIN_FACE_FRACTION = 0.5  # an audio-visual segment with a face in fewer of its frames is decoded without video


def can_drop_video_or_audio(recognizer: Any) -> bool:
    """Whether the model decodes without one of its streams: audio-visual with a learned
    stand-in for a missing stream."""
    model = recognizer.model
    return model.modality == "audiovisual" and bool(model.config.missing_stream_embeddings)


def face_gaps(face: np.ndarray, min_gap: float = FACE_GAP) -> List[Segment]:
    """Stretches (seconds) of at least ``min_gap`` where no face was found, from ``face`` bool
    ``(T,)`` at 25 fps."""
    gaps, start = [], None
    for k, found in enumerate(list(face) + [True]):
        if not found and start is None:
            start = k
        elif found and start is not None:
            if (k - start) / VIDEO_FPS >= min_gap:
                gaps.append(Segment(start / VIDEO_FPS, k / VIDEO_FPS))
            start = None
    return gaps


def plan_segments(recognizer: Any, media: Media,
                  options: SegmentOptions = SegmentOptions()) -> Tuple[List[Segment], List[Segment]]:
    """Where to cut ``media`` and the gaps left undecoded: ``(segments, gaps)``. Voice activity
    on its audio; for video alone, fixed overlapping windows over the stretches with a face (the
    stretches without one are the gaps)."""
    whisper = recognizer.model.config.decoder == "whisper-decoder"
    max_segment = options.max_segment or (WHISPER_WINDOW if whisper else DEFAULT_MAX_SEGMENT)
    if whisper and max_segment > WHISPER_WINDOW:
        raise ValueError(f"--max-segment-seconds {max_segment}: a Whisper decoder reads at most {WHISPER_WINDOW:g} s")
    faceless = media.face is not None and media.video is None
    if faceless and media.audio is not None and not can_drop_video_or_audio(recognizer):
        raise ValueError(f"{media.path}: no face found in any frame of the video, and this audio-visual model has no "
                         "stand-in for a missing stream")
    if media.audio is not None:
        vad = VadOptions(**{**options.vad.__dict__, "max_segment": max_segment})
        return speech_segments(media.audio, vad), []
    if media.video is None:
        video_only = recognizer.model.modality == "video"
        which = "this video-only model" if video_only else "with --drop-stream audio the model"
        raise ValueError(f"{media.path}: no face found in any frame of the video, and {which} reads nothing else")
    gaps = face_gaps(media.face)
    window = min(options.video_window, max_segment)
    segments, start = [], 0.0
    for gap in gaps + [Segment(media.seconds, media.seconds)]:
        if gap.start > start:
            segments += [Segment(start + w.start, start + w.end)
                         for w in fixed_windows(gap.start - start, window, options.video_overlap)]
        start = gap.end
    return segments, gaps


def segment_inputs(recognizer: Any, media: Media, segment: Segment) -> Dict[str, torch.Tensor]:
    """Model inputs of one segment. With video the cut falls on 25 fps frame boundaries and the
    audio (640 samples a frame) follows them, so both streams cover the same time. An
    audio-visual segment with audio and a face in fewer than half its frames goes without video
    (the model's stand-in for a missing stream takes its place)."""
    video = audio = None
    if media.face is not None:
        f0 = int(round(segment.start * VIDEO_FPS))
        f1 = max(f0 + 1, min(len(media.face), int(round(segment.end * VIDEO_FPS))))
        faces = media.face[f0:f1].mean() >= MIN_FACE_FRACTION
        if media.video is not None and (faces or media.audio is None or not can_drop_video_or_audio(recognizer)):
            video = media.video[f0:f1]
        if media.audio is not None:
            per_frame = SAMPLE_RATE // VIDEO_FPS
            audio = media.audio[f0 * per_frame : f1 * per_frame]
    elif media.audio is not None:
        audio = media.audio[int(round(segment.start * SAMPLE_RATE)) : int(round(segment.end * SAMPLE_RATE))]
    return recognizer.prepare_inputs(video=video, audio=audio)


PROMPT_RESET_TEMPERATURE = 0.5  # openai-whisper: a text sampled hotter than this is not used as a prompt


def transcribe_media(recognizer: Any, media: Media, segments: Sequence[Segment], batch_size: int = 8,
                     progress: bool = True, gaps: Sequence[Segment] = (), guard: GuardOptions = GuardOptions(),
                     fallback: Any = None, previous_text: bool = False, **options: Any) -> Transcript:
    """Decode ``segments`` of ``media``, ``batch_size`` of similar length at a time (the
    longest first); ``options`` go to :meth:`Recognizer.decode_options`; ``gaps`` are recorded.
    Each hypothesis is checked by ``guard``; with ``fallback``
    (:class:`espnet.asr.fallback.FallbackOptions`) a failed one is decoded again by sampling.

    ``previous_text`` (Whisper decoders): each segment is decoded after the text of the
    segments before it (openai-whisper's ``condition_on_previous_text``), so the segments are
    decoded one at a time in time order; the context starts afresh after a segment whose kept
    hypothesis was sampled above temperature 0.5 (as openai-whisper does) or still fails the guard."""
    if batch_size < 1:
        raise ValueError(f"--batch-size must be >= 1, got {batch_size}")
    results: List[Any] = [None] * len(segments)
    streams: List[Tuple[str, ...]] = [()] * len(segments)
    if previous_text:
        batches = [[i] for i in range(len(segments))]  # time order, one at a time
    else:
        order = sorted(range(len(segments)), key=lambda i: (-segments[i].seconds, i))
        batches = [order[b : b + batch_size] for b in range(0, len(order), batch_size)]
    context = ""
    with tqdm(total=len(segments), desc=os.path.basename(media.path), unit="seg", disable=not progress) as bar:
        for batch in batches:
            items = [segment_inputs(recognizer, media, segments[i]) for i in batch]
            previous = [context] if previous_text else None
            hyps = recognizer.recognize_guarded(items, guard, fallback, previous, **options)
            for i, item, hyp in zip(batch, items, hyps):
                results[i] = hyp
                streams[i] = tuple(s for s in ("video", "audio") if s in item)
                if previous_text:
                    fresh = hyp.temperature > PROMPT_RESET_TEMPERATURE or hyp.check.failed
                    context = "" if fresh else f"{context} {hyp.text.strip()}".strip()
            bar.update(len(batch))
    return Transcript(media.path, media.seconds,
                      [SegmentText(s.start, s.end, r.text.strip(), k, r.check, r.temperature)
                       for s, r, k in zip(segments, results, streams)], list(gaps))
