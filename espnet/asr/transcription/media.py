"""Decoding a recording of any container PyAV opens (mp4, mkv, mov, avi, webm, wav, flac, mp3,
m4a, ogg; any frame rate, sample rate and channel count) into the model's rates: 16 kHz mono
float audio and 25 fps video frames."""

import os
from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np
import torch

from datamodule.media import SAMPLE_RATE, VIDEO_FPS, decode_error

MOUTH_CROP_SIZE = 96  # what preparation/prepare_dataset.py writes (CROP_SIZE)


@dataclass
class Media:
    """One recording at the model's rates.

    Attributes:
        path: The file (named in messages).
        audio: ``(S,)`` float32 mono at 16 kHz, or ``None`` (not read, or no audio stream).
        video: ``(T, 3, H, W)`` uint8 RGB at 25 fps, or ``None`` (not read, or no video stream).
        has_audio / has_video: Whether the file holds the stream (read or not).
    """

    path: str
    audio: Optional[torch.Tensor]
    video: Optional[torch.Tensor]
    has_audio: bool
    has_video: bool

    @property
    def seconds(self) -> float:
        """Duration: the audio's, else the video's."""
        if self.audio is not None:
            return self.audio.numel() / SAMPLE_RATE
        if self.video is not None:
            return self.video.size(0) / VIDEO_FPS
        return 0.0


def probe_streams(path: str) -> tuple:
    """``(has_audio, has_video)`` of a media file, from its header.

    Raises:
        FileNotFoundError; ValueError naming the file when PyAV cannot open it.
    """
    import av

    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: file not found")
    try:
        with av.open(path) as container:
            return bool(container.streams.audio), bool(container.streams.video)
    except av.error.FFmpegError as err:
        raise decode_error(path, "media file", err) from err


def frames_at_rate(times: Sequence[float], fps: float, end: float) -> np.ndarray:
    """Which source frame shows at each output frame time ``k / fps`` (``k = 0 ..
    round(end * fps) - 1``): the frame whose presentation time is the nearest at or before the
    output time, allowing half an output frame of jitter (sample and hold, as FFmpeg's fps filter).

    Args:
        times: Presentation times in seconds of the decoded frames, increasing.
        fps: Output frame rate.
        end: Duration of the video in seconds (last frame time plus its duration).

    Returns:
        int64 indices into ``times``, one per output frame.
    """
    n_out = max(1, int(round(end * fps)))
    targets = np.arange(n_out) / fps + 0.5 / fps
    idx = np.searchsorted(np.asarray(times, dtype=np.float64), targets, side="right") - 1
    return np.clip(idx, 0, len(times) - 1)


def load_audio_mono(path: str, sample_rate: int = SAMPLE_RATE) -> torch.Tensor:
    """The first audio stream at ``sample_rate``, its channels averaged (not FFmpeg's default
    downmix, which adds channels at -3 dB and can raise the level past full scale).

    Returns:
        float32 ``(S,)``.
    """
    import av

    chunks = []
    try:
        with av.open(path) as container:
            stream = container.streams.audio[0]
            resampler = av.AudioResampler(format="fltp", rate=sample_rate)  # the file's channels, planar
            for frame in container.decode(stream):
                for out in resampler.resample(frame):
                    chunks.append(out.to_ndarray().mean(axis=0))
            for out in resampler.resample(None):
                chunks.append(out.to_ndarray().mean(axis=0))
    except av.error.FFmpegError as err:
        raise decode_error(path, "audio", err) from err
    if not chunks:
        raise ValueError(f"{path}: the audio stream holds no decodable sample")
    return torch.from_numpy(np.concatenate(chunks).astype(np.float32))


def load_video_at_rate(path: str, fps: float = VIDEO_FPS, max_size: Optional[int] = None) -> torch.Tensor:
    """Every frame of the first video stream, converted to ``fps`` (see :func:`frames_at_rate`).

    Args:
        path: Any file PyAV opens.
        fps: Output frame rate.
        max_size: Refuse frames wider or taller than this (before decoding them).

    Returns:
        uint8 ``(T, 3, H, W)``.
    """
    import av

    try:
        with av.open(path) as container:
            stream = container.streams.video[0]
            width, height = int(stream.codec_context.width or 0), int(stream.codec_context.height or 0)
            if max_size is not None and max(width, height) > max_size:
                raise ValueError(f"{path}: the video is {width}x{height}; this version reads mouth-crop video of at most "
                                 f"{max_size}x{max_size} (python preparation/prepare_dataset.py crops a face video)")
            images, times = [], []
            rate = float(stream.average_rate or stream.guessed_rate or fps)
            start = None
            for frame in container.decode(stream):
                t = frame.time if frame.time is not None else len(times) / rate
                start = t if start is None else start
                images.append(frame.to_ndarray(format="rgb24"))
                times.append(t - start)
    except av.error.FFmpegError as err:
        raise decode_error(path, "video", err) from err
    if not images:
        raise ValueError(f"{path}: the video stream holds no decodable frame")
    step = float(np.median(np.diff(times))) if len(times) > 1 else 1.0 / rate
    chosen = frames_at_rate(times, fps, times[-1] + step)
    return torch.from_numpy(np.stack([images[i] for i in chosen])).permute(0, 3, 1, 2).contiguous()


def decode_media(path: str, streams: Sequence[str], max_video_size: Optional[int] = MOUTH_CROP_SIZE) -> Media:
    """Read the ``streams`` (``audio`` / ``video``) a file holds, at the model's rates. A stream
    the file lacks is ``None`` (the caller decides whether that is an error).

    With both streams the audio is cut or zero-padded to the video's length (640 samples a
    frame), as prepared clips are.

    Raises:
        FileNotFoundError; ValueError naming the file (unreadable or truncated, neither stream,
        a stream that cannot be decoded).
    """
    has_audio, has_video = probe_streams(path)
    if not has_audio and not has_video:
        raise ValueError(f"{path}: the file holds neither an audio nor a video stream")
    audio = video = None
    if "audio" in streams and has_audio:
        audio = load_audio_mono(path)
    if "video" in streams and has_video:
        video = load_video_at_rate(path, VIDEO_FPS, max_video_size)
    if audio is not None and video is not None:
        want = video.size(0) * (SAMPLE_RATE // VIDEO_FPS)
        audio = torch.nn.functional.pad(audio, (0, max(0, want - audio.numel())))[:want]
    return Media(path, audio, video, has_audio, has_video)
