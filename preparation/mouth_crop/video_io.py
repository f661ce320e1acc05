"""Decode a video at a fixed output frame rate by picking source frames by timestamp."""

import os
from typing import Iterator, List, Optional

import numpy as np


class NoVideoError(ValueError):
    """The file has no video stream, or no frame of it can be decoded."""


class FrameRateReader:
    """Iterate a video's frames resampled to ``fps`` (RGB uint8 ``(H, W, 3)`` each).

    Output frame ``k`` shows the source frame on screen at the middle of its interval,
    ``start + (k + 0.5) / fps``, where ``start`` is the first frame's presentation time:
    a source frame is shown from its own timestamp to the next one's (the last one for one
    nominal source frame duration). Input at the output rate passes through one to one:
    every frame exactly once and unchanged, even when its timestamps wander by less than half
    a frame from the regular grid; 29.97 fps input drops about one frame in six, 50 fps every
    other frame, 12.5 fps shows each frame twice. The output has ``round(duration * fps)``
    frames (ties down).

    After a complete iteration, :attr:`start_time` (s), :attr:`source_frames`,
    :attr:`source_fps` (nominal), :attr:`num_frames` (output frames) and
    :attr:`source_index` (the source frame each output frame shows, counted from 0; a frame
    whose timestamp does not advance is skipped and not counted) describe the clip.
    Iterating again decodes the file again and yields the same frames.

    Args:
        path: Video file.
        fps: Output frame rate (frames per second).

    Raises (while iterating):
        FileNotFoundError: ``path`` does not exist.
        NoVideoError: no video stream or no decodable frame; FFmpeg's decoding errors are
            re-raised as this, naming the file.
    """

    def __init__(self, path: str, fps: float) -> None:
        if fps <= 0:
            raise ValueError(f"output fps must be positive, got {fps}")
        self.path = path
        self.fps = float(fps)
        self.start_time: Optional[float] = None
        self.source_frames = 0
        self.source_fps: Optional[float] = None
        self.num_frames = 0
        self.source_index: List[int] = []

    def __iter__(self) -> Iterator[np.ndarray]:
        import av
        from av.video.reformatter import VideoReformatter

        if not os.path.isfile(self.path):
            raise FileNotFoundError(f"video file not found: {self.path}")
        self.num_frames = 0
        self.source_frames = 0
        self.source_index = []
        try:
            with av.open(self.path) as container:
                if not container.streams.video:
                    raise NoVideoError(f"{self.path} has no video stream")
                stream = container.streams.video[0]
                nominal = stream.average_rate or stream.guessed_rate or stream.base_rate
                self.source_fps = float(nominal) if nominal else None
                previous: Optional[np.ndarray] = None
                previous_time = 0.0
                to_rgb = VideoReformatter()  # one colour converter for all frames (set up once)
                for index, frame in enumerate(container.decode(stream)):
                    time = frame.time
                    if time is None:  # no timestamps: assume a constant rate
                        if self.source_fps is None:
                            raise NoVideoError(f"{self.path}: frames have no timestamps and the stream no frame rate")
                        time = index / self.source_fps
                    if previous is not None and time <= previous_time:
                        continue  # a repeated or out-of-order timestamp: keep the frame already shown
                    if previous is None:
                        self.start_time = time
                    else:
                        yield from self._emit_until(previous, time)
                    previous, previous_time = to_rgb.reformat(frame, format="rgb24").to_ndarray(), time
                    self.source_frames += 1
                if previous is None:
                    raise NoVideoError(f"{self.path} contains no decodable video frames")
                duration = 1.0 / self.source_fps if self.source_fps else 1.0 / self.fps
                yield from self._emit_until(previous, previous_time + duration)
        except av.FFmpegError as err:
            raise NoVideoError(f"{self.path}: cannot decode the video: {err}") from err

    def _emit_until(self, frame: np.ndarray, end_time: float) -> Iterator[np.ndarray]:
        """Yield ``frame`` for every output frame whose mid-time lies before ``end_time``."""
        while self.start_time + (self.num_frames + 0.5) / self.fps < end_time:
            self.num_frames += 1
            self.source_index.append(self.source_frames - 1)
            yield frame
