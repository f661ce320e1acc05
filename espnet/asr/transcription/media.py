"""Decoding a recording of any container PyAV opens (mp4, mkv, mov, avi, webm, wav, flac, mp3,
m4a, ogg; any frame rate, sample rate and channel count) into the model's rates: 16 kHz mono
float audio (channels averaged) and 25 fps mouth-region frames (a face video is cropped by the
data preparation's own cropper, with the frames where a face was found)."""

import os
from dataclasses import dataclass
from typing import Any, Callable, Optional, Sequence, Tuple

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
        face: bool ``(T,)`` the 25 fps frames where a face was found (video read), else ``None``.
    """

    path: str
    audio: Optional[torch.Tensor]
    video: Optional[torch.Tensor]
    has_audio: bool
    has_video: bool
    face: Optional[np.ndarray] = None

    @property
    def seconds(self) -> float:
        """Duration: the audio's, else the video's."""
        if self.audio is not None:
            return self.audio.numel() / SAMPLE_RATE
        if self.face is not None:
            return len(self.face) / VIDEO_FPS
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


def load_video_at_rate(path: str, fps: float = VIDEO_FPS) -> torch.Tensor:
    """Every frame of the first video stream at ``fps``, picked by timestamp as the data
    preparation does (:class:`preparation.mouth_crop.video_io.FrameRateReader`).

    Returns:
        uint8 ``(T, 3, H, W)``.
    """
    from preparation.mouth_crop.video_io import FrameRateReader

    frames = list(FrameRateReader(path, fps))
    return torch.from_numpy(np.stack(frames)).permute(0, 3, 1, 2).contiguous()


def video_size(path: str) -> Tuple[int, int]:
    """``(width, height)`` of the first video stream, from the header."""
    import av

    try:
        with av.open(path) as container:
            context = container.streams.video[0].codec_context
            return int(context.width or 0), int(context.height or 0)
    except av.error.FFmpegError as err:
        raise decode_error(path, "video", err) from err


def mouth_video(path: str, cropper_factory: Optional[Callable[[], Any]]) -> Tuple[Optional[torch.Tensor], np.ndarray]:
    """The mouth-region video of ``path`` at 25 fps and where a face is, ``(frames, face)``:
    frames uint8 ``(T, 3, S, S)`` (``None`` when no frame shows a face) and ``face`` bool
    ``(T,)``. A video no larger than a mouth crop (96x96) is taken as one (a face in every
    frame); a larger one goes through the data preparation's cropper (face keypoints ->
    filling and smoothing -> Auto-AVSR's mouth crop), which ``cropper_factory`` makes.
    """
    width, height = video_size(path)
    if max(width, height) <= MOUTH_CROP_SIZE:
        frames = load_video_at_rate(path)
        return frames, np.ones(frames.size(0), dtype=bool)
    if cropper_factory is None:
        raise ValueError(f"{path}: the video is {width}x{height}, not a mouth crop, and no face cropper was given")
    clip = cropper_factory().crop_video(path)
    if clip.status == "no_video":
        raise ValueError(clip.message if clip.message.startswith(path) else f"{path}: {clip.message}")
    found = np.asarray(clip.track.found, dtype=bool)
    if clip.status != "ok":
        return None, np.zeros(len(found), dtype=bool)
    gray = torch.from_numpy(clip.frames)
    return gray.unsqueeze(1).expand(-1, 3, -1, -1).contiguous(), found


def decode_media(path: str, streams: Sequence[str], cropper_factory: Optional[Callable[[], Any]] = None) -> Media:
    """Read the ``streams`` (``audio`` / ``video``) a file holds, at the model's rates. A stream
    the file lacks is ``None`` (the caller decides whether that is an error); so is a video in
    which no face is found (``face`` all false). Video is the mouth region (see
    :func:`mouth_video`).

    With video the audio is cut or zero-padded to the video's length (640 samples a frame),
    as prepared clips are.

    Raises:
        FileNotFoundError; ValueError naming the file (unreadable or truncated, neither stream,
        a stream that cannot be decoded).
    """
    has_audio, has_video = probe_streams(path)
    if not has_audio and not has_video:
        raise ValueError(f"{path}: the file holds neither an audio nor a video stream")
    audio = video = face = None
    if "audio" in streams and has_audio:
        audio = load_audio_mono(path)
    if "video" in streams and has_video:
        video, face = mouth_video(path, cropper_factory)
    if audio is not None and face is not None:
        want = len(face) * (SAMPLE_RATE // VIDEO_FPS)
        audio = torch.nn.functional.pad(audio, (0, max(0, want - audio.numel())))[:want]
    return Media(path, audio, video, has_audio, has_video, face)
