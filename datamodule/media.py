"""Media decoding with PyAV: mp4 frames and 16 kHz mono waveforms."""

import os

import numpy as np
import torch

SAMPLE_RATE = 16000


def _require_file(path: str, what: str) -> None:
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{what} file not found: {path}")


def load_video(path: str) -> torch.Tensor:
    """Decode every frame of a video as RGB.

    Returns:
        uint8 tensor ``(T, 3, H, W)``.
    """
    import av

    _require_file(path, "video")
    with av.open(path) as container:
        if not container.streams.video:
            raise ValueError(f"{path} has no video stream")
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    if not frames:
        raise ValueError(f"{path} contains no decodable video frames")
    return torch.from_numpy(np.stack(frames)).permute(0, 3, 1, 2).contiguous()


def load_audio(path: str, sample_rate: int = SAMPLE_RATE) -> torch.Tensor:
    """Decode an audio file to mono float32 in [-1, 1] at ``sample_rate``.

    Returns:
        float tensor ``(S, 1)``.
    """
    import av

    _require_file(path, "audio")
    chunks = []
    with av.open(path) as container:
        if not container.streams.audio:
            raise ValueError(f"{path} has no audio stream")
        resampler = av.AudioResampler(format="flt", layout="mono", rate=sample_rate)
        for frame in container.decode(audio=0):
            for out in resampler.resample(frame):
                chunks.append(out.to_ndarray().reshape(-1))
        for out in resampler.resample(None):
            chunks.append(out.to_ndarray().reshape(-1))
    if not chunks:
        raise ValueError(f"{path} contains no audio samples")
    return torch.from_numpy(np.concatenate(chunks).astype(np.float32)).unsqueeze(1)


def write_wav(path: str, waveform: torch.Tensor, sample_rate: int = SAMPLE_RATE) -> None:
    """Write a mono float waveform ``(S,)`` or ``(S, 1)`` as 16-bit PCM wav."""
    import av

    pcm = (waveform.reshape(-1).clamp(-1.0, 1.0 - 1.0 / 32768) * 32768).round().short().numpy()
    with av.open(path, mode="w", format="wav") as container:
        stream = container.add_stream("pcm_s16le", rate=sample_rate, layout="mono")
        frame = av.AudioFrame.from_ndarray(pcm.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = sample_rate
        for packet in stream.encode(frame):
            container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)


def write_video(path: str, frames: torch.Tensor, fps: int = 25) -> None:
    """Write uint8 frames ``(T, H, W)`` (gray) or ``(T, H, W, 3)`` (RGB) as H.264 mp4."""
    import av

    arr = frames.numpy()
    if arr.ndim == 3:
        arr = np.repeat(arr[..., None], 3, axis=-1)
    with av.open(path, mode="w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height = arr.shape[2], arr.shape[1]
        stream.pix_fmt = "yuv420p"
        stream.options = {"crf": "18", "preset": "veryfast"}
        for img in arr:
            for packet in stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(img), format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
