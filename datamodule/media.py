"""Media decoding with PyAV: mp4 frames and 16 kHz mono waveforms; header probes (no decoding)."""

import os
import struct
from dataclasses import dataclass
from typing import Optional

import numpy as np
import torch

SAMPLE_RATE = 16000  # audio, Hz
VIDEO_FPS = 25  # mouth-crop video, frames per second


def wav_path(video_path: str) -> str:
    """The audio of a clip: the ``.wav`` beside its ``.mp4`` (same name)."""
    return os.path.splitext(video_path)[0] + ".wav"


def _require_file(path: str, what: str) -> None:
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{what} file not found: {path}")


def decode_error(path: str, what: str, err: Exception) -> ValueError:
    """A PyAV/FFmpeg error (e.g. ``InvalidDataError`` for a truncated mp4) as a
    ``ValueError`` that names the file."""
    reason = getattr(err, "strerror", None) or str(err)
    return ValueError(f"{path}: cannot read the {what} ({reason}; a truncated or damaged file?)")


@dataclass
class VideoInfo:
    """Facts from a video container's header: ``frames`` (0 when unknown), ``fps``, pixel size."""

    frames: int
    fps: float
    width: int
    height: int


@dataclass
class AudioInfo:
    """Facts from an audio file's header: duration in seconds, sample rate in Hz, channels."""

    seconds: float
    sample_rate: int
    channels: int


def probe_video(path: str) -> VideoInfo:
    """Read the header of a video file (no decoding): frame count from the container
    (``nb_frames``; else duration x rate), frame rate and size.

    Raises:
        FileNotFoundError, or ValueError naming the file (no video stream, unreadable).
    """
    import av

    _require_file(path, "video")
    try:
        with av.open(path) as container:
            if not container.streams.video:
                raise ValueError(f"{path} has no video stream")
            stream = container.streams.video[0]
            fps = float(stream.average_rate or stream.guessed_rate or 0)
            frames = int(stream.frames or 0)
            if not frames and fps:
                if stream.duration and stream.time_base:
                    frames = round(float(stream.duration * stream.time_base) * fps)
                elif container.duration:
                    frames = round(container.duration / 1e6 * fps)
            return VideoInfo(frames, fps, int(stream.codec_context.width or 0), int(stream.codec_context.height or 0))
    except av.error.FFmpegError as err:
        raise decode_error(path, "video", err) from err


_WAV_TAGS_PCM = (1, 3, 0xFFFE)  # integer PCM, float PCM, WAVE_FORMAT_EXTENSIBLE


def probe_audio(path: str) -> AudioInfo:
    """Read the header of an audio file (no decoding). A RIFF/WAVE file with PCM samples is
    parsed directly (about 20 us); other files go through PyAV's header probe.

    A wav whose ``data`` chunk announces more bytes than the file holds is an error
    (truncated file).

    Raises:
        FileNotFoundError, or ValueError naming the file.
    """
    _require_file(path, "audio")
    info = _probe_pcm_wav(path)
    return info if info is not None else _probe_audio_av(path)


def _probe_pcm_wav(path: str) -> Optional[AudioInfo]:
    """:class:`AudioInfo` of a PCM RIFF/WAVE file, or ``None`` when it is something else."""
    size = os.path.getsize(path)
    with open(path, "rb") as handle:
        head = handle.read(12)
        if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
            return None
        fmt = None
        while True:
            chunk = handle.read(8)
            if len(chunk) < 8:
                return None
            chunk_id, chunk_size = chunk[:4], struct.unpack("<I", chunk[4:])[0]
            if chunk_id == b"fmt ":
                body = handle.read(chunk_size + (chunk_size & 1))
                if len(body) < 16:
                    return None
                tag, channels, rate, _, block_align, _ = struct.unpack("<HHIIHH", body[:16])
                if tag not in _WAV_TAGS_PCM or not channels or not rate or not block_align:
                    return None
                fmt = (channels, rate, block_align)
            elif chunk_id == b"data":
                if fmt is None:
                    return None
                channels, rate, block_align = fmt
                available = size - handle.tell()
                if chunk_size in (0, 0xFFFFFFFF):  # size left open by an interrupted writer
                    chunk_size = available
                if chunk_size > available:
                    raise ValueError(f"{path}: the wav header announces {chunk_size // block_align / rate:.3f} s but "
                                     f"the file holds {available // block_align / rate:.3f} s (truncated file?)")
                return AudioInfo(chunk_size // block_align / rate, rate, channels)
            else:
                handle.seek(chunk_size + (chunk_size & 1), 1)


def _probe_audio_av(path: str) -> AudioInfo:
    import av

    try:
        with av.open(path) as container:
            if not container.streams.audio:
                raise ValueError(f"{path} has no audio stream")
            stream = container.streams.audio[0]
            if stream.duration and stream.time_base:
                seconds = float(stream.duration * stream.time_base)
            elif container.duration:
                seconds = container.duration / 1e6
            else:
                seconds = 0.0
            return AudioInfo(seconds, int(stream.sample_rate or 0), int(stream.channels or 0))
    except av.error.FFmpegError as err:
        raise decode_error(path, "audio", err) from err


def load_video(path: str) -> torch.Tensor:
    """Decode every frame of a video as RGB.

    Returns:
        uint8 tensor ``(T, 3, H, W)``.
    """
    import av
    from av.video.reformatter import VideoReformatter

    _require_file(path, "video")
    # one converter for the whole clip: ``frame.to_ndarray(format=...)`` sets up a new
    # colour conversion for every frame, which took ~7x the decoding itself (96x96 clips)
    to_rgb = VideoReformatter()
    try:
        with av.open(path) as container:
            if not container.streams.video:
                raise ValueError(f"{path} has no video stream")
            frames = [to_rgb.reformat(f, format="rgb24").to_ndarray() for f in container.decode(video=0)]
    except av.error.FFmpegError as err:
        raise decode_error(path, "video", err) from err
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
    try:
        with av.open(path) as container:
            if not container.streams.audio:
                raise ValueError(f"{path} has no audio stream")
            resampler = av.AudioResampler(format="flt", layout="mono", rate=sample_rate)
            for frame in container.decode(audio=0):
                for out in resampler.resample(frame):
                    chunks.append(out.to_ndarray().reshape(-1))
            for out in resampler.resample(None):
                chunks.append(out.to_ndarray().reshape(-1))
    except av.error.FFmpegError as err:
        raise decode_error(path, "audio", err) from err
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
        # A clip must come out the same whatever the machine, the process or the number of
        # preparation workers: x264's macroblock-tree rate control gave different pixels for the
        # same frames from one encode to the next (up to 21 levels apart), and its output depends
        # on its thread count (auto = per core). Without mbtree, on one thread, it is repeatable.
        stream.options = {"crf": "18", "preset": "veryfast", "threads": "1", "x264-params": "no-mbtree=1"}
        for img in arr:
            for packet in stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(img), format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
