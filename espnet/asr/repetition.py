"""Telling a repeating (or otherwise failed) hypothesis, in the spirit of openai-whisper's
decoding fallback.

A decoder that does not see where the speech ends (a pretrained Whisper on unpadded audio, an
untrained decoder) repeats a phrase until the length limit. Two signs give it away, for every
decoder:

* the **compression ratio** of the text: its UTF-8 bytes over their zlib-compressed size
  (openai-whisper's ``compression_ratio``); a text that repeats itself compresses well.
  openai-whisper counts a ratio above 2.4 as a failure;
* the hypothesis **stopped at the length limit** (``--max-new-tokens`` for a pretrained
  decoder, the encoder length for the Transformer decoder) instead of at its end token.

A hypothesis showing either is *repeating*. The guard of the decoding fallback
(:mod:`espnet.asr.fallback`) also looks at the **average log-probability** per token,
``score / (tokens + 1)`` (the end token counted, as openai-whisper does), where the score is
the decoder's own log-probability (no CTC, no length bonus): below -1.0 it fails too.
"""

import math
import zlib
from dataclasses import dataclass
from typing import Optional, Sequence

COMPRESSION_RATIO_THRESHOLD = 2.4  # openai-whisper's transcribe() default
LOGPROB_THRESHOLD = -1.0  # openai-whisper's transcribe() default


def compression_ratio(text: str) -> float:
    """UTF-8 bytes of ``text`` over its zlib-compressed bytes (0.0 for an empty text)."""
    data = text.encode("utf-8")
    if not data:
        return 0.0
    return len(data) / len(zlib.compress(data))


@dataclass(frozen=True)
class GuardOptions:
    """Thresholds of the guard. ``logprob_threshold`` ``None`` = not checked."""

    compression_ratio_threshold: float = COMPRESSION_RATIO_THRESHOLD
    logprob_threshold: Optional[float] = LOGPROB_THRESHOLD

    def __post_init__(self) -> None:
        ratio = self.compression_ratio_threshold
        if not (math.isfinite(ratio) and ratio > 0):
            raise ValueError(f"--compression-ratio-threshold must be a finite number > 0, got {ratio}")
        lp = self.logprob_threshold
        if lp is not None and not (math.isfinite(lp) and lp <= 0):
            raise ValueError(f"--logprob-threshold must be a finite number <= 0 (a log-probability), got {lp}")


@dataclass(frozen=True)
class HypothesisCheck:
    """What the guard found in one hypothesis.

    Attributes:
        compression_ratio: See :func:`compression_ratio`.
        hit_length_limit: It stopped at the length limit, not at its end token.
        avg_logprob: Average log-probability per token (``None`` where the score is not the
            decoder's own log-probability).
        repeating: ``compression_ratio`` above the threshold, or ``hit_length_limit``.
        failed: ``repeating``, or ``avg_logprob`` below its threshold.
    """

    compression_ratio: float
    hit_length_limit: bool
    avg_logprob: Optional[float]
    repeating: bool
    failed: bool

    def to_json(self) -> dict:
        out = {"compression_ratio": round(self.compression_ratio, 4), "hit_length_limit": self.hit_length_limit,
               "repeating": self.repeating}
        if self.avg_logprob is not None:
            out["avg_logprob"] = round(self.avg_logprob, 4)
        return out


def average_logprob(score: Optional[float], num_tokens: int) -> Optional[float]:
    """``score / (num_tokens + 1)`` (the end token counted), ``None`` without a finite score."""
    if score is None or not math.isfinite(score):
        return None
    return score / (num_tokens + 1)


def check_hypothesis(text: str, hit_length_limit: bool, avg_logprob: Optional[float] = None,
                     options: GuardOptions = GuardOptions()) -> HypothesisCheck:
    """Apply the guard of ``options`` to a hypothesis (its ``text``; whether it stopped at the
    length limit; its average log-probability, if known)."""
    ratio = compression_ratio(text)
    repeating = ratio > options.compression_ratio_threshold or hit_length_limit
    low = (options.logprob_threshold is not None and avg_logprob is not None
           and avg_logprob < options.logprob_threshold)
    return HypothesisCheck(ratio, hit_length_limit, avg_logprob, repeating, repeating or low)


def repetition_warning(checks: Sequence[HypothesisCheck], what: str, options: GuardOptions,
                       limit: str = "the length limit") -> Optional[str]:
    """``"warning: 3 of 90 hypotheses repeat ..."`` when any of ``checks`` is repeating, else
    ``None``. ``what``: the counted things (``hypotheses``, ``segments of talk.mp4``);
    ``limit``: how the length limit is named (``--max-new-tokens 64``)."""
    count = sum(c.repeating for c in checks)
    if not count:
        return None
    at_limit = sum(c.hit_length_limit for c in checks)
    return (f"warning: {count} of {len(checks)} {what} repeat (compression ratio above "
            f"{options.compression_ratio_threshold:g}, or stopped at {limit}: {at_limit}); they are marked "
            f"\"repeating\" in the JSON output")
