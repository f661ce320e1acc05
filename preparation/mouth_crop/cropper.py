"""Mouth cropping of one clip: landmarks -> fill + smooth -> align -> crop -> mp4 + wav."""

import os
from dataclasses import dataclass
from fractions import Fraction
from typing import Iterable, List, Optional, Tuple

import numpy as np

from preparation.mouth_crop.alignment import crop_transforms
from preparation.mouth_crop.audio import extract_audio
from preparation.mouth_crop.crop import warp_crop
from preparation.mouth_crop.landmarks import NUM_KEYPOINTS, LandmarkDetector, MediaPipeFaceMesh
from preparation.mouth_crop.smoothing import fill_missing, smooth
from preparation.mouth_crop.video_io import FrameRateReader, NoVideoError


@dataclass
class CropResult:
    """Outcome of :meth:`MouthCropper.process_clip`.

    Attributes:
        status: ``"ok"`` (files written), ``"no_face"`` (no face in any frame; nothing
            written) or ``"no_video"`` (no video stream or no decodable frame; nothing written).
        num_frames: Frames written at the output rate (0 unless ok).
        num_samples: Audio samples written at the output sample rate (0 when the input has no
            audio or no audio was asked for).
        message: What happened, for logs (frames with a face, silence padding, the error).
    """

    status: str
    num_frames: int
    num_samples: int
    message: str = ""


@dataclass
class MouthTrack:
    """Per-frame geometry of a cropped clip (``T`` output frames, ``K`` keypoints).

    Attributes:
        landmarks: float ``(T, K, 2)`` detected keypoints in source pixels, NaN where no face.
        found: bool ``(T,)`` frames where a face was detected.
        smoothed: float ``(T, K, 2)`` keypoints after filling and temporal smoothing.
        to_crop: float ``(T, 2, 3)`` affine maps from source pixels to crop pixels.
        scale: float ``(T,)`` crop pixels per source pixel.
        start_time: Presentation time of the first frame (s); output frame ``k`` shows time
            ``start_time + (k + 0.5) / fps``.
        source_fps: Nominal frame rate of the input (None when the file gives none).
        source_frames: Frames decoded from the input.
    """

    landmarks: np.ndarray
    found: np.ndarray
    smoothed: np.ndarray
    to_crop: np.ndarray
    scale: np.ndarray
    start_time: float
    source_fps: Optional[float]
    source_frames: int


@dataclass
class ClipCrops:
    """Mouth crops of one clip in memory (:meth:`MouthCropper.crop_video`).

    Attributes:
        status: ``"ok"``, ``"no_face"`` or ``"no_video"`` (as in :class:`CropResult`).
        frames: uint8 ``(T, S, S, 3)`` RGB crops at the output rate (None unless ok).
        track: The geometry behind them (None for ``"no_video"``; for ``"no_face"`` only
            ``landmarks``/``found`` are meaningful).
        message: What happened.
    """

    status: str
    frames: Optional[np.ndarray]
    track: Optional[MouthTrack]
    message: str


class MouthCropper:
    """Crop the mouth region of talking-face videos into fixed-size, fixed-rate clips.

    Per clip: decode at ``fps`` (source frames picked by timestamp), detect the face keypoints
    in every output frame, fill frames without a face by interpolating their neighbours,
    smooth the keypoints over ``smooth_window`` frames, map each frame onto the mean face by a
    similarity transform and cut a ``crop_size`` square centred on the mouth. Build one per
    worker process and reuse it for many clips (the detector starts lazily, on the first clip).

    Args:
        crop_size: Side of the square crop in pixels.
        fps: Output frame rate.
        sample_rate: Output audio rate (Hz), mono.
        smooth_window: Odd number of frames in the centred moving average of the keypoints.
        mouth_width: Mouth width of the mean face as a fraction of ``crop_size``.
        detector: A :class:`~preparation.mouth_crop.landmarks.LandmarkDetector`; default the
            MediaPipe face mesh with ``min_detection_confidence``/``min_tracking_confidence``.
        min_detection_confidence: Face-detector score needed to start tracking a face.
        min_tracking_confidence: Landmark score needed to keep tracking it.
        max_buffer_mb: Decoded frames kept in memory between landmark detection and cropping;
            a longer clip is decoded a second time instead.
    """

    def __init__(self, crop_size: int = 96, fps: float = 25.0, sample_rate: int = 16000, *,
                 smooth_window: int = 5, mouth_width: float = 0.45, detector: Optional[LandmarkDetector] = None,
                 min_detection_confidence: float = 0.5, min_tracking_confidence: float = 0.5,
                 max_buffer_mb: float = 512.0) -> None:
        if crop_size < 8:
            raise ValueError(f"crop_size must be at least 8 pixels, got {crop_size}")
        if fps <= 0 or sample_rate <= 0:
            raise ValueError(f"fps and sample_rate must be positive, got fps={fps}, sample_rate={sample_rate}")
        if smooth_window < 1 or smooth_window % 2 == 0:
            raise ValueError(f"smooth_window must be a positive odd number of frames, got {smooth_window}")
        if not 0.05 <= mouth_width <= 0.95:
            raise ValueError(f"mouth_width must be a fraction of the crop in [0.05, 0.95], got {mouth_width}")
        self.crop_size = int(crop_size)
        self.fps = float(fps)
        self.sample_rate = int(sample_rate)
        self.smooth_window = int(smooth_window)
        self.mouth_width = float(mouth_width)
        self.max_buffer_bytes = int(max_buffer_mb * 2 ** 20)
        self.detector: LandmarkDetector = detector if detector is not None else MediaPipeFaceMesh(
            min_detection_confidence=min_detection_confidence, min_tracking_confidence=min_tracking_confidence)

    def close(self) -> None:
        """Release the detector."""
        self.detector.close()

    def __enter__(self) -> "MouthCropper":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def _detect_all(self, reader: FrameRateReader) -> Tuple[np.ndarray, Optional[List[np.ndarray]]]:
        """Keypoints of every output frame ``(T, K, 2)`` (NaN without a face) and the frames,
        unless they outgrew the memory budget."""
        self.detector.reset()
        missing = np.full((NUM_KEYPOINTS, 2), np.nan)
        landmarks: List[np.ndarray] = []
        frames: Optional[List[np.ndarray]] = []
        held = 0
        previous, previous_points = None, None
        for frame in reader:
            if frame is not previous:  # a source frame repeated for a lower input rate is detected once
                previous, previous_points = frame, self.detector.detect(frame)
                held += frame.nbytes
            landmarks.append(missing if previous_points is None else previous_points)
            if frames is not None:
                frames.append(frame)
                if held > self.max_buffer_bytes:
                    frames = None
        return np.stack(landmarks) if landmarks else np.zeros((0, NUM_KEYPOINTS, 2)), frames

    def crop_video(self, video_path: str) -> ClipCrops:
        """Mouth crops of ``video_path`` in memory, with the geometry behind them.

        Raises:
            FileNotFoundError: ``video_path`` does not exist.
        """
        reader = FrameRateReader(video_path, self.fps)
        try:
            landmarks, frames = self._detect_all(reader)
        except NoVideoError as err:
            return ClipCrops("no_video", None, None, str(err))
        if len(landmarks) == 0:
            return ClipCrops("no_video", None, None, f"{video_path}: the video is shorter than one output frame")
        found = ~np.isnan(landmarks).any(axis=(1, 2))
        empty = np.zeros((0, 2, 3))
        track = MouthTrack(landmarks, found, landmarks, empty, np.zeros(0), float(reader.start_time),
                           reader.source_fps, reader.source_frames)
        if not found.any():
            return ClipCrops("no_face", None, track, f"{video_path}: no face found in any of {len(found)} frames")
        track.smoothed = smooth(fill_missing(landmarks), self.smooth_window)
        track.to_crop, track.scale = crop_transforms(track.smoothed, self.crop_size, self.mouth_width)
        source: Iterable[np.ndarray] = frames if frames is not None else FrameRateReader(video_path, self.fps)
        crops = [warp_crop(frame, matrix, self.crop_size) for frame, matrix in zip(source, track.to_crop)]
        if len(crops) != len(found):
            raise RuntimeError(f"{video_path}: decoding again gave {len(crops)} frames instead of {len(found)}")
        message = f"face found in {int(found.sum())}/{len(found)} frames"
        if not found.all():
            message += f" ({int((~found).sum())} interpolated)"
        return ClipCrops("ok", np.stack(crops), track, message)

    def process_clip(self, video_path: str, video_out: str, audio_out: Optional[str] = None) -> CropResult:
        """Crop one clip and write ``video_out`` (H.264 mp4, ``fps``, ``crop_size`` square, RGB)
        and, when the input has audio and ``audio_out`` is given, ``audio_out`` (16-bit wav,
        ``sample_rate``, mono, covering exactly the video's frames: ``num_frames *
        sample_rate / fps`` samples from the first frame's time on, silence where the input's
        audio does not reach). Nothing is written unless the status is ``"ok"``.

        Raises:
            FileNotFoundError: ``video_path`` does not exist.
            ValueError: the audio stream exists but cannot be decoded.
        """
        from datamodule.media import write_video, write_wav

        clip = self.crop_video(video_path)
        if clip.status != "ok":
            return CropResult(clip.status, 0, 0, clip.message)
        num_frames = len(clip.frames)
        message = clip.message
        audio = None
        if audio_out is not None:
            num_samples = int(round(num_frames * self.sample_rate / self.fps))
            extracted = extract_audio(video_path, clip.track.start_time, num_samples, self.sample_rate)
            if extracted is None:
                message += "; no audio stream"
            else:
                audio, covered = extracted
                if num_samples - covered > 0.1 * self.sample_rate:
                    message += f"; audio padded with {(num_samples - covered) / self.sample_rate:.2f} s of silence"
        for path in (video_out, audio_out if audio is not None else None):
            if path is not None and os.path.dirname(path):
                os.makedirs(os.path.dirname(path), exist_ok=True)
        import torch

        rate = int(self.fps) if self.fps.is_integer() else Fraction(self.fps).limit_denominator(1001)
        write_video(video_out, torch.from_numpy(clip.frames), fps=rate)
        if audio is not None:
            write_wav(audio_out, audio, sample_rate=self.sample_rate)
        return CropResult("ok", num_frames, 0 if audio is None else len(audio), message)
