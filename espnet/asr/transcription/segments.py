"""Splitting a long recording into segments the model decodes well: voice activity (Silero VAD,
``silero-vad``, whose model ships in its wheel) where there is audio, long speech split at its
quietest point, and overlapping fixed windows for video alone."""

import functools
import warnings
from dataclasses import dataclass
from typing import List

import torch

from datamodule.media import SAMPLE_RATE

ENERGY_FRAME = 160  # 10 ms at 16 kHz: the resolution of the split points of long speech


@dataclass(frozen=True)
class Segment:
    """A stretch of the recording, in seconds from its start."""

    start: float
    end: float

    @property
    def seconds(self) -> float:
        return self.end - self.start


@dataclass(frozen=True)
class VadOptions:
    """Voice-activity settings.

    Attributes:
        threshold: Speech probability above which a 32 ms frame is speech (Silero's hysteresis
            ends speech below ``threshold - 0.15``).
        min_speech: Shorter bursts of speech are dropped (seconds).
        min_silence: Pauses shorter than this do not end a segment (seconds).
        pad: Seconds of context added on both sides of each segment.
        max_segment: Longer speech is split at its quietest 10 ms (seconds).
    """

    threshold: float = 0.5
    min_speech: float = 0.25
    min_silence: float = 0.5
    pad: float = 0.1
    max_segment: float = 20.0


@functools.lru_cache(maxsize=1)
def silero_model() -> torch.nn.Module:
    """The Silero VAD model shipped in the ``silero-vad`` wheel (TorchScript; loaded once)."""
    try:
        from silero_vad import load_silero_vad
    except ImportError as err:
        raise ImportError("transcription needs silero-vad for voice activity: pip install silero-vad==6.2.3") from err
    with warnings.catch_warnings():
        # the package's own loading (TorchScript, importlib.resources.path) warns about APIs it uses
        warnings.filterwarnings("ignore", message=".*torch.jit.load.*is deprecated", category=FutureWarning)
        warnings.filterwarnings("ignore", message="path is deprecated", category=DeprecationWarning)
        return load_silero_vad(onnx=False)


def speech_segments(audio: torch.Tensor, options: VadOptions = VadOptions()) -> List[Segment]:
    """Segments of speech in ``audio`` ``(S,)`` (16 kHz mono float), none longer than
    ``options.max_segment``; an empty list for a recording without speech."""
    from silero_vad import get_speech_timestamps

    stamps = get_speech_timestamps(audio.float(), silero_model(), sampling_rate=SAMPLE_RATE,
                                   threshold=options.threshold,
                                   min_speech_duration_ms=int(options.min_speech * 1000),
                                   min_silence_duration_ms=int(options.min_silence * 1000),
                                   speech_pad_ms=int(options.pad * 1000))
    segments: List[Segment] = []
    for stamp in stamps:
        for start, end in split_long(audio, int(stamp["start"]), int(stamp["end"]),
                                     int(options.max_segment * SAMPLE_RATE)):
            segments.append(Segment(start / SAMPLE_RATE, end / SAMPLE_RATE))
    return segments


def split_long(audio: torch.Tensor, start: int, end: int, max_samples: int) -> List[tuple]:
    """``[start, end)`` (samples) cut into pieces of at most ``max_samples``: each cut at the
    10 ms frame of least energy in the second half of the longest allowed piece."""
    pieces = []
    while end - start > max_samples:
        lo, hi = start + max_samples // 2, start + max_samples
        n = (hi - lo) // ENERGY_FRAME
        frames = audio[lo : lo + n * ENERGY_FRAME].reshape(n, ENERGY_FRAME)
        cut = lo + int(frames.pow(2).mean(dim=1).argmin()) * ENERGY_FRAME + ENERGY_FRAME // 2
        pieces.append((start, cut))
        start = cut
    pieces.append((start, end))
    return pieces


def fixed_windows(seconds: float, window: float, overlap: float) -> List[Segment]:
    """Windows of ``window`` seconds, each starting ``window - overlap`` after the last, covering
    ``[0, seconds]``: the last one ends at ``seconds``, and a remainder shorter than half a window
    is added to the window before it (a recording shorter than a window is one window)."""
    if not 0 <= overlap < window:
        raise ValueError(f"the overlap ({overlap} s) must be shorter than the window ({window} s)")
    hop = window - overlap
    out: List[Segment] = []
    while out == [] or out[-1].end < seconds:
        start = len(out) * hop
        if out and seconds - start < window / 2:
            out[-1] = Segment(out[-1].start, seconds)
        else:
            out.append(Segment(start, min(start + window, seconds)))
    return out
