"""Clips that are already mouth crops: bring them to 25 fps, ``crop_size`` squares and
16 kHz mono audio, without a face detector.

:class:`ResampleClip` has the interface of ``preparation.mouth_crop.MouthCropper``
(``process_clip(video_path, video_out, audio_out) -> result`` with ``status``,
``num_frames``, ``num_samples``, ``message``), so ``prepare_dataset --already-cropped`` uses
it in place of the detector.
"""

import os
from fractions import Fraction
from typing import Optional

import numpy as np
import torch

from preparation.mouth_crop.audio import extract_audio
from preparation.mouth_crop.cropper import CropResult
from preparation.mouth_crop.video_io import FrameRateReader, NoVideoError


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


class ResampleClip:
    """Re-time an already-cropped clip to ``fps``, make it ``crop_size`` square and extract
    its audio at ``sample_rate`` (mono). Same interface and timing as ``MouthCropper``
    (frames picked by timestamp with its :class:`FrameRateReader`; audio from the first
    frame's time, ``sample_rate / fps`` samples per frame, band-limited resampling), only
    without the face detector.

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
        self.fps = float(fps)
        self.sample_rate = sample_rate

    def process_clip(self, video_path: str, video_out: str, audio_out: Optional[str] = None) -> CropResult:
        """Write ``video_out`` (H.264 mp4, RGB, ``fps``) and, when the input has audio,
        ``audio_out`` (16-bit PCM wav). A file without a decodable video stream gives status
        ``no_video``; a missing file raises ``FileNotFoundError``."""
        from datamodule.media import write_video, write_wav

        reader = FrameRateReader(video_path, self.fps)
        try:
            frames = square_resize(torch.from_numpy(np.stack(list(reader))), self.crop_size)
        except NoVideoError as err:
            return CropResult("no_video", 0, 0, str(err))
        message, audio = "", None
        if audio_out is not None:
            num_samples = int(round(frames.size(0) * self.sample_rate / self.fps))
            extracted = extract_audio(video_path, reader.start_time, num_samples, self.sample_rate)
            if extracted is None:
                message = "no audio stream"
            else:
                audio, covered = extracted
                if num_samples - covered > 0.1 * self.sample_rate:
                    message = f"audio padded with {(num_samples - covered) / self.sample_rate:.2f} s of silence"
        if os.path.dirname(video_out):
            os.makedirs(os.path.dirname(video_out), exist_ok=True)
        rate = int(self.fps) if self.fps.is_integer() else Fraction(self.fps).limit_denominator(1001)
        write_video(video_out, frames, fps=rate)
        if audio is not None:
            write_wav(audio_out, audio, sample_rate=self.sample_rate)
        return CropResult("ok", int(frames.size(0)), 0 if audio is None else len(audio), message)
