"""Clips that are already mouth crops: bring them to 25 fps, ``crop_size`` squares and
16 kHz mono audio, without a face detector.

:class:`ResampleClip` has the interface of ``preparation.mouth_crop.MouthCropper``
(``process_clip(video_path, video_out, audio_out) -> result`` with ``status``,
``num_frames``, ``num_samples``, ``message``), so ``prepare_dataset --already-cropped`` uses
it in place of the detector.
"""

import math
import os
from dataclasses import dataclass
from fractions import Fraction
from typing import List, Optional

import numpy as np
import torch


@dataclass
class ClipResult:
    """Same fields as ``preparation.mouth_crop.CropResult``.

    Attributes:
        status: ``ok`` or ``no_video`` (no video stream / no decodable frame).
        num_frames: Frames written at ``fps`` (0 unless ok).
        num_samples: Audio samples written at ``sample_rate`` (0 when the input has no audio
            or no ``audio_out`` was asked for).
        message: Why the status is not ok.
    """

    status: str
    num_frames: int
    num_samples: int
    message: str = ""


def frame_indices_at_rate(times: List[float], fps: float) -> List[int]:
    """Source frame per output frame for constant-rate output at ``fps``.

    A source frame is on screen from its timestamp to the next one's (the last one for the
    median frame interval); output frame ``k`` shows the source frame on screen at the middle
    of its interval, ``(k + 0.5) / fps`` s after the first frame (the convention of
    ``preparation.mouth_crop``). 25 fps input comes out unchanged; 30 fps input drops every
    sixth frame. The output has ``round(duration * fps)`` frames (ties down, at least 1).

    Args:
        times: Source frame timestamps in seconds, ascending.
        fps: Output frame rate (Hz).

    Returns:
        Indices into ``times``, one per output frame.
    """
    t = np.asarray(times, dtype=np.float64)
    t = t - t[0]
    step = float(np.median(np.diff(t))) if t.size > 1 else 1.0 / fps
    n_out = max(1, int(math.ceil((t[-1] + step) * fps - 0.5 - 1e-9)))
    middles = (np.arange(n_out) + 0.5) / fps
    return np.clip(np.searchsorted(t, middles + 1e-9, side="right") - 1, 0, t.size - 1).astype(int).tolist()


def square_resize(frames: torch.Tensor, size: int) -> torch.Tensor:
    """Centre-crop ``(T, H, W, 3)`` uint8 frames to a square and resize to ``size``×``size``
    (bilinear, antialiased); a no-op for frames already that size."""
    h, w = frames.shape[1:3]
    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    frames = frames[:, top:top + side, left:left + side]
    if side == size:
        return frames.contiguous()
    x = frames.permute(0, 3, 1, 2).float()
    x = torch.nn.functional.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    return x.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).contiguous()


def read_frames(path: str) -> tuple:
    """Every decodable frame of ``path`` as RGB and its timestamp.

    Returns:
        ``(frames (T, H, W, 3) uint8 or None, times in seconds)``; ``None`` when the file has
        no video stream or no decodable frame.
    """
    import av

    images, times = [], []
    with av.open(path) as container:
        if not container.streams.video:
            return None, []
        stream = container.streams.video[0]
        rate = float(stream.average_rate) if stream.average_rate else 25.0
        for n, frame in enumerate(container.decode(stream)):
            images.append(frame.to_ndarray(format="rgb24"))
            times.append(frame.time if frame.time is not None else n / rate)
    if not images:
        return None, []
    order = np.argsort(np.asarray(times), kind="stable")  # presentation order
    frames = torch.from_numpy(np.stack([images[i] for i in order]))
    return frames, [times[i] for i in order]


def has_audio(path: str) -> bool:
    """Whether the media file has an audio stream."""
    import av

    with av.open(path) as container:
        return bool(container.streams.audio)


class ResampleClip:
    """Re-time an already-cropped clip to ``fps``, make it ``crop_size`` square and extract
    its audio at ``sample_rate`` (mono). Same interface as ``MouthCropper``.

    Args:
        crop_size: Output side in pixels (96: the processed-data convention; training crops
            88×88 out of it).
        fps: Output frame rate (Hz).
        sample_rate: Output audio rate (Hz).
    """

    def __init__(self, crop_size: int = 96, fps: float = 25.0, sample_rate: int = 16000) -> None:
        if crop_size < 1 or fps <= 0 or sample_rate < 1:
            raise ValueError(f"crop_size, fps and sample_rate must be positive, got {crop_size}, {fps}, {sample_rate}")
        self.crop_size = crop_size
        self.fps = fps
        self.sample_rate = sample_rate

    def process_clip(self, video_path: str, video_out: str, audio_out: Optional[str] = None) -> ClipResult:
        """Write ``video_out`` (H.264 mp4, RGB, ``fps``) and, when the input has audio,
        ``audio_out`` (16-bit PCM wav). Errors of unreadable files propagate (PyAV errors
        name the file)."""
        from datamodule.media import load_audio, write_video, write_wav

        if not os.path.isfile(video_path):
            raise FileNotFoundError(f"video file not found: {video_path}")
        frames, times = read_frames(video_path)
        if frames is None:
            return ClipResult("no_video", 0, 0, f"{video_path}: no video stream or no decodable frame")
        frames = square_resize(frames[frame_indices_at_rate(times, self.fps)], self.crop_size)
        rate = int(self.fps) if float(self.fps).is_integer() else Fraction(self.fps).limit_denominator(1001)
        write_video(video_out, frames, fps=rate)
        num_samples = 0
        if audio_out is not None and has_audio(video_path):
            waveform = load_audio(video_path, self.sample_rate)
            write_wav(audio_out, waveform, self.sample_rate)
            num_samples = int(waveform.size(0))
        return ClipResult("ok", int(frames.size(0)), num_samples)
