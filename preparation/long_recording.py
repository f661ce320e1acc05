"""Long recordings made of short clips joined by silences, muxed as a phone or camera would
write them (H.264 at 29.97 fps, AAC at 48 kHz stereo): test and benchmark input for
``transcribe.py`` whose segment boundaries and per-utterance texts are known."""

from fractions import Fraction
from typing import Callable, List, Optional, Sequence, Tuple

import numpy as np
import torch

NTSC = Fraction(30000, 1001)
Clip = Tuple[torch.Tensor, torch.Tensor]  # 25 fps frames (T, 3, H, W) uint8, 16 kHz audio (S,) float


def speech_extent(audio: torch.Tensor, relative: float = 0.02) -> Tuple[float, float]:
    """First and last sample (seconds, 16 kHz) above ``relative`` times the peak: where a clip
    speaks."""
    loud = (audio.abs() > relative * audio.abs().max()).nonzero()[:, 0]
    return loud[0].item() / 16000, (loud[-1].item() + 1) / 16000


def write_recording(path: str, clips: Sequence[Clip], gap: float = 1.5, video: bool = True, audio: bool = True,
                    fps: Fraction = NTSC, rate: int = 48000, channels: int = 2,
                    paint: Optional[Callable[[float, np.ndarray], np.ndarray]] = None) -> Tuple[List[tuple], float]:
    """Join ``clips`` with ``gap`` seconds of silence (grey frames) before, between and after
    them and write one file: H.264 video at ``fps`` (each output frame shows the clip frame on
    screen at its time) and/or AAC audio at ``rate`` Hz with ``channels`` equal channels.

    Args:
        paint: ``paint(seconds, image)`` turns each RGB uint8 ``(H, W, 3)`` frame into the one
            written (e.g. a mouth crop pasted into a face); all must have one size.

    Returns:
        The speech extents of the clips in the recording (seconds, :func:`speech_extent`) and
        its duration in seconds.
    """
    import av
    import torchaudio

    truth, placed, pieces, t = [], [], [torch.zeros(int(gap * 16000))], gap
    for frames, wav in clips:
        lo, hi = speech_extent(wav)
        truth.append((t + lo, t + hi))
        placed.append((t, frames))
        pieces += [wav, torch.zeros(int(gap * 16000))]
        t += wav.numel() / 16000 + gap
    layout = "stereo" if channels == 2 else "mono"
    paint = paint or (lambda now, image: image)
    with av.open(path, "w") as container:
        if video:
            height, width = paint(0.0, clips[0][0][0].permute(1, 2, 0).numpy()).shape[:2]
            vstream = container.add_stream("libx264", rate=fps)
            vstream.width, vstream.height, vstream.pix_fmt = width, height, "yuv420p"
            vstream.options = {"crf": "18", "preset": "veryfast", "threads": "1"}
        if audio:
            astream = container.add_stream("aac", rate=rate, layout=layout)
        if video:
            for k in range(int(t * float(fps))):
                now, image = k / float(fps), np.full(tuple(clips[0][0].shape[2:]) + (3,), 90, np.uint8)
                for start, frames in placed:
                    if start <= now < start + frames.size(0) / 25:
                        image = frames[int((now - start) * 25)].permute(1, 2, 0).numpy()
                frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(paint(now, image)), format="rgb24")
                frame.pts = k
                for packet in vstream.encode(frame):
                    container.mux(packet)
            for packet in vstream.encode():
                container.mux(packet)
        if audio:
            high = torchaudio.functional.resample(torch.cat(pieces), 16000, rate).numpy().astype(np.float32)
            samples = np.stack([high] * channels)
            for i in range(0, samples.shape[1], 1024):
                frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(samples[:, i : i + 1024]), format="fltp",
                                                   layout=layout)
                frame.sample_rate, frame.pts = rate, i
                for packet in astream.encode(frame):
                    container.mux(packet)
            for packet in astream.encode(None):
                container.mux(packet)
    return truth, t
