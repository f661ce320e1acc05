"""Decoding a recording segment by segment with a :class:`~espnet.asr.pretrained.Recognizer`:
which streams it reads, where the segments are, and their texts (segments of similar length
decoded together by the batched decoder; each gets the text it gets alone)."""

from dataclasses import dataclass, field
from typing import Any, Dict, List, Sequence, Tuple

import torch
from tqdm import tqdm

from datamodule.media import SAMPLE_RATE, VIDEO_FPS
from espnet.asr.transcription.media import Media
from espnet.asr.transcription.segments import Segment, VadOptions, fixed_windows, speech_segments

WHISPER_WINDOW = 30.0  # seconds: Whisper's input window
DEFAULT_MAX_SEGMENT = 20.0  # seconds: our models (trained on utterances of a few seconds)


@dataclass
class SegmentText:
    """The text of one segment (seconds from the start of the recording) and the streams read."""

    start: float
    end: float
    text: str
    streams: Tuple[str, ...]


@dataclass
class Transcript:
    """A recording's segments in time order and its duration in seconds."""

    path: str
    seconds: float
    segments: List[SegmentText] = field(default_factory=list)

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


def streams_to_read(recognizer: Any, media_path: str, has_audio: bool, has_video: bool) -> Tuple[str, ...]:
    """The streams of the file that the model reads. An audio-visual model reads the one stream
    a file has when the model has a learned stand-in for the other; otherwise a stream the model
    needs and the file lacks is an error naming the file."""
    have = {"audio": has_audio, "video": has_video}
    wanted = tuple(recognizer.streams)
    present = tuple(s for s in wanted if have[s])
    lacking = [s for s in wanted if not have[s]]
    if not lacking:
        return present
    model = recognizer.model
    if present and model.modality == "audiovisual" and model.config.missing_stream_embeddings:
        return present
    holds = " and ".join(s for s in ("audio", "video") if have[s]) or "no stream"
    need = " and ".join(wanted)
    why = "" if model.modality != "audiovisual" else " (this model has no stand-in for a missing stream)"
    raise ValueError(f"{media_path}: the model reads {need} but the file holds only {holds}{why}")


def plan_segments(recognizer: Any, media: Media, options: SegmentOptions = SegmentOptions()) -> List[Segment]:
    """Where to cut ``media``: voice activity on its audio, else fixed overlapping windows."""
    whisper = recognizer.model.config.decoder == "whisper-decoder"
    max_segment = options.max_segment or (WHISPER_WINDOW if whisper else DEFAULT_MAX_SEGMENT)
    if whisper and max_segment > WHISPER_WINDOW:
        raise ValueError(f"--max-segment-seconds {max_segment}: a Whisper decoder reads at most {WHISPER_WINDOW:g} s")
    if media.audio is not None:
        vad = VadOptions(**{**options.vad.__dict__, "max_segment": max_segment})
        return speech_segments(media.audio, vad)
    return fixed_windows(media.seconds, min(options.video_window, max_segment), options.video_overlap)


def segment_inputs(recognizer: Any, media: Media, segment: Segment) -> Dict[str, torch.Tensor]:
    """Model inputs of one segment. With video the cut falls on 25 fps frame boundaries and the
    audio (640 samples a frame) follows them, so both streams cover the same time."""
    video = audio = None
    if media.video is not None:
        f0 = int(round(segment.start * VIDEO_FPS))
        f1 = max(f0 + 1, min(media.video.size(0), int(round(segment.end * VIDEO_FPS))))
        video = media.video[f0:f1]
        if media.audio is not None:
            per_frame = SAMPLE_RATE // VIDEO_FPS
            audio = media.audio[f0 * per_frame : f1 * per_frame]
    elif media.audio is not None:
        audio = media.audio[int(round(segment.start * SAMPLE_RATE)) : int(round(segment.end * SAMPLE_RATE))]
    return recognizer.prepare_inputs(video=video, audio=audio)


def transcribe_media(recognizer: Any, media: Media, segments: Sequence[Segment], batch_size: int = 8,
                     progress: bool = True, **options: Any) -> Transcript:
    """Decode ``segments`` of ``media``, ``batch_size`` of similar length at a time (the
    longest first); ``options`` go to :meth:`Recognizer.decode_options`."""
    if batch_size < 1:
        raise ValueError(f"--batch-size must be >= 1, got {batch_size}")
    streams = tuple(s for s in ("video", "audio") if getattr(media, s) is not None)
    texts: List[str] = [""] * len(segments)
    order = sorted(range(len(segments)), key=lambda i: (-segments[i].seconds, i))
    name = media.path.rsplit("/", 1)[-1]
    with tqdm(total=len(segments), desc=name, unit="seg", disable=not progress) as bar:
        for b in range(0, len(order), batch_size):
            batch = order[b : b + batch_size]
            items = [segment_inputs(recognizer, media, segments[i]) for i in batch]
            for i, text in zip(batch, recognizer.transcribe_batch(items, **options)):
                texts[i] = text.strip()
            bar.update(len(batch))
    return Transcript(media.path, media.seconds,
                      [SegmentText(s.start, s.end, t, streams) for s, t in zip(segments, texts)])
