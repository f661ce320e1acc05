"""One clip's streams, decoded and aligned: the one function the dataset, the recogniser API
and transcription use to turn media files into model inputs (before transforms)."""

from typing import Dict, Optional, Sequence

import torch

from datamodule.media import SAMPLE_RATE, VIDEO_FPS, load_audio, load_video, wav_path
from datamodule.media_cache import MediaCache

SAMPLES_PER_FRAME = SAMPLE_RATE // VIDEO_FPS  # 16 kHz audio samples per 25 fps video frame
AV_TOLERANCE_SECONDS = 0.1


def cut_or_pad(data: torch.Tensor, size: int) -> torch.Tensor:
    """Trim or zero-pad ``data`` ``(S, C)`` along time to ``size``."""
    if data.size(0) < size:
        return torch.nn.functional.pad(data, (0, 0, 0, size - data.size(0)))
    return data[:size]


def load_clip(video_path: str, streams: Sequence[str], audio_path: Optional[str] = None,
              media_cache: Optional[MediaCache] = None,
              av_tolerance: float = AV_TOLERANCE_SECONDS) -> Dict[str, torch.Tensor]:
    """The ``streams`` (``"video"`` and/or ``"audio"``) of one clip, untransformed.

    Args:
        video_path: The clip's ``.mp4`` (25 fps mouth crops), also named in errors.
        streams: Which streams to read.
        audio_path: Its 16 kHz audio; default: the ``.wav`` beside ``video_path``.
        media_cache: Decoded clips kept in memory, or ``None`` to decode the files.
        av_tolerance: With both streams, the largest allowed difference of their durations
            in seconds (an error naming the clip beyond it); within it the audio is cut or
            zero-padded to ``640 * T`` samples.

    Returns:
        ``{"video": (T, H, W) uint8 frames}`` and/or ``{"audio": (S, 1) float}`` (16 kHz).
    """
    unknown = [s for s in streams if s not in ("video", "audio")]
    if unknown or not streams:
        raise ValueError(f"streams must be video and/or audio, got {list(streams)}")
    out: Dict[str, torch.Tensor] = {}
    if "video" in streams:
        out["video"] = media_cache.video(video_path) if media_cache is not None else load_video(video_path)
    if "audio" in streams:
        wav = audio_path or wav_path(video_path)
        audio = media_cache.audio(wav) if media_cache is not None else load_audio(wav)
        if "video" in out:
            frames = out["video"].size(0)
            want = frames * SAMPLES_PER_FRAME
            if abs(audio.size(0) - want) > av_tolerance * SAMPLE_RATE:
                raise ValueError(
                    f"{video_path}: audio lasts {audio.size(0) / SAMPLE_RATE:.3f} s but the video "
                    f"{frames / VIDEO_FPS:.3f} s ({frames} frames); they differ by more than {av_tolerance} s")
            audio = cut_or_pad(audio, want)
        out["audio"] = audio
    return out
