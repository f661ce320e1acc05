"""Mouth cropping of one clip: keypoints -> fill + smooth -> align -> gray crop -> mp4 + wav."""

import os
from dataclasses import dataclass
from fractions import Fraction
from typing import Iterable, List, Optional, Tuple

import numpy as np

from preparation.mouth_crop.alignment import crop_transforms
from preparation.mouth_crop.audio import extract_audio
from preparation.mouth_crop.crop import to_gray, warp_crop
from preparation.mouth_crop.landmarks import NUM_KEYPOINTS, LandmarkDetector, MediaPipeFaceDetection
from preparation.mouth_crop.smoothing import fill_missing, smooth_shape
from preparation.mouth_crop.video_io import FrameRateReader, NoVideoError


@dataclass
class CropResult:
    """Outcome of :meth:`MouthCropper.process_clip`.

    Attributes:
        status: ``"ok"`` (files written), ``"no_face"`` (a face in fewer than
            ``min_face_fraction`` of the frames; nothing written) or ``"no_video"`` (no video
            stream or no decodable frame; nothing written).
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
        source_index: int ``(T,)`` source frame shown by each output frame (``arange(T)``
            for input at the output rate).
        detector: Which detector found the keypoints: ``"main"``, or ``"fallback"`` when the
            main one found too few faces and the fallback more.
    """

    landmarks: np.ndarray
    found: np.ndarray
    smoothed: np.ndarray
    to_crop: np.ndarray
    scale: np.ndarray
    start_time: float
    source_fps: Optional[float]
    source_frames: int
    source_index: np.ndarray
    detector: str = "main"


@dataclass
class ClipCrops:
    """Mouth crops of one clip in memory (:meth:`MouthCropper.crop_video`).

    Attributes:
        status: ``"ok"``, ``"no_face"`` or ``"no_video"`` (as in :class:`CropResult`).
        frames: uint8 ``(T, S, S)`` grayscale crops at the output rate (None unless ok).
        track: The geometry behind them (None for ``"no_video"``; for ``"no_face"`` only
            ``landmarks``/``found`` are meaningful).
        message: What happened.
    """

    status: str
    frames: Optional[np.ndarray]
    track: Optional[MouthTrack]
    message: str


class MouthCropper:
    """Crop the mouth region of talking-face videos into fixed-size, fixed-rate grayscale clips
    with the geometry of Auto-AVSR's preparation.

    Per clip: decode at ``fps`` (source frames picked by timestamp; input at ``fps`` passes
    through one to one); find four keypoints (eye centres, nose tip, mouth centre) in every
    output frame with ``detector``, or, for a clip where it finds a face in fewer than
    ``min_face_fraction`` of the frames, with ``fallback_detector`` if that finds more (a clip
    still below that fraction has no face); fill frames without a face by interpolating their
    neighbours; smooth the keypoints' configuration over ``smooth_window`` frames, keeping
    each frame's own centroid; map each frame onto Auto-AVSR's mean face (a 256x256 frame) by
    a similarity transform and cut a ``crop_size`` square centred on the mouth, in grayscale.
    Build one per worker process and reuse it for many clips (the detectors start lazily, on
    the first clip).

    Args:
        crop_size: Side of the square crop in pixels of the aligned frame (96: Auto-AVSR's; the
            face keeps its size, another crop size shows more or less around the mouth).
        fps: Output frame rate.
        sample_rate: Output audio rate (Hz), mono.
        smooth_window: Odd number of frames in the centred moving average of the keypoints
            (13: Auto-AVSR's +-6 frames).
        detector: A :class:`~preparation.mouth_crop.landmarks.LandmarkDetector`; default
            MediaPipe's full-range face detector with ``min_detection_confidence``.
        fallback_detector: Tried on clips where ``detector`` finds too few faces; default,
            when ``detector`` is not given, MediaPipe's short-range face detector (Auto-AVSR
            tries it when the full-range one finds no face at all); none when ``detector`` is
            given.
        min_detection_confidence: Face-detector score needed to accept a face.
        min_face_fraction: Fraction of the frames that must show a face for the clip to be
            cropped. Auto-AVSR crops a clip with a face in any frame, but MediaPipe's
            detectors also "find" faces in a few frames of pure noise (2 of 25 random frames
            in tests/test_mouth_crop.py), while a real face is found in nearly every frame;
            below this fraction most crops would be interpolated guesses.
        max_buffer_mb: Decoded frames kept in memory between landmark detection and cropping;
            a longer clip is decoded a second time instead.
    """

    def __init__(self, crop_size: int = 96, fps: float = 25.0, sample_rate: int = 16000, *,
                 smooth_window: int = 13, detector: Optional[LandmarkDetector] = None,
                 fallback_detector: Optional[LandmarkDetector] = None, min_detection_confidence: float = 0.5,
                 min_face_fraction: float = 0.5, max_buffer_mb: float = 512.0) -> None:
        if crop_size < 8:
            raise ValueError(f"crop_size must be at least 8 pixels, got {crop_size}")
        if fps <= 0 or sample_rate <= 0:
            raise ValueError(f"fps and sample_rate must be positive, got fps={fps}, sample_rate={sample_rate}")
        if smooth_window < 1 or smooth_window % 2 == 0:
            raise ValueError(f"smooth_window must be a positive odd number of frames, got {smooth_window}")
        if not 0.0 < min_face_fraction <= 1.0:
            raise ValueError(f"min_face_fraction must be in (0, 1], got {min_face_fraction}")
        self.crop_size = int(crop_size)
        self.fps = float(fps)
        self.sample_rate = int(sample_rate)
        self.smooth_window = int(smooth_window)
        self.min_face_fraction = float(min_face_fraction)
        self.max_buffer_bytes = int(max_buffer_mb * 2 ** 20)
        if detector is None:
            detector = MediaPipeFaceDetection("full", min_detection_confidence)
            if fallback_detector is None:
                fallback_detector = MediaPipeFaceDetection("short", min_detection_confidence)
        self.detector: LandmarkDetector = detector
        self.fallback_detector: Optional[LandmarkDetector] = fallback_detector

    def close(self) -> None:
        """Release the detectors."""
        self.detector.close()
        if self.fallback_detector is not None:
            self.fallback_detector.close()

    def __enter__(self) -> "MouthCropper":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def _detect_all(self, reader: FrameRateReader,
                    detector: LandmarkDetector) -> Tuple[np.ndarray, Optional[List[np.ndarray]]]:
        """Keypoints of every output frame ``(T, K, 2)`` (NaN without a face) and the frames in
        grayscale, unless they outgrew the memory budget."""
        detector.reset()
        missing = np.full((NUM_KEYPOINTS, 2), np.nan)
        landmarks: List[np.ndarray] = []
        frames: Optional[List[np.ndarray]] = []
        held = 0
        previous, previous_points, previous_gray = None, None, None
        for frame in reader:
            if frame is not previous:  # a source frame repeated for a lower input rate is detected once
                previous, previous_points = frame, detector.detect(frame)
                previous_gray = None if frames is None else to_gray(frame)
                held += frame.nbytes // 3
            landmarks.append(missing if previous_points is None else previous_points)
            if frames is not None:
                frames.append(previous_gray)
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
            landmarks, frames = self._detect_all(reader, self.detector)
        except NoVideoError as err:
            return ClipCrops("no_video", None, None, str(err))
        if len(landmarks) == 0:
            return ClipCrops("no_video", None, None, f"{video_path}: the video is shorter than one output frame")
        found = ~np.isnan(landmarks).any(axis=(1, 2))
        used = "main"
        if found.mean() < self.min_face_fraction and self.fallback_detector is not None:
            other, other_frames = self._detect_all(FrameRateReader(video_path, self.fps), self.fallback_detector)
            other_found = ~np.isnan(other).any(axis=(1, 2))
            if other_found.sum() > found.sum():
                landmarks, frames, found, used = other, other_frames, other_found, "fallback"
        empty = np.zeros((0, 2, 3))
        track = MouthTrack(landmarks, found, landmarks, empty, np.zeros(0), float(reader.start_time),
                           reader.source_fps, reader.source_frames, np.array(reader.source_index), used)
        if not found.any():
            return ClipCrops("no_face", None, track, f"{video_path}: no face found in any of {len(found)} frames")
        if found.mean() < self.min_face_fraction:
            return ClipCrops("no_face", None, track, f"{video_path}: a face found in only {int(found.sum())} of "
                             f"{len(found)} frames (fewer than min_face_fraction={self.min_face_fraction:g})")
        track.smoothed = smooth_shape(fill_missing(landmarks), self.smooth_window)
        track.to_crop, track.scale = crop_transforms(track.smoothed, self.crop_size)
        source: Iterable[np.ndarray] = frames if frames is not None else (
            to_gray(frame) for frame in FrameRateReader(video_path, self.fps))
        crops = [warp_crop(frame, matrix, self.crop_size) for frame, matrix in zip(source, track.to_crop)]
        if len(crops) != len(found):
            raise RuntimeError(f"{video_path}: decoding again gave {len(crops)} frames instead of {len(found)}")
        message = f"face found in {int(found.sum())}/{len(found)} frames"
        if not found.all():
            message += f" ({int((~found).sum())} interpolated)"
        if used == "fallback":
            message += " by the fallback detector (the main one found fewer)"
        return ClipCrops("ok", np.stack(crops), track, message)

    def process_clip(self, video_path: str, video_out: str, audio_out: Optional[str] = None) -> CropResult:
        """Crop one clip and write ``video_out`` (H.264 mp4, ``fps``, ``crop_size`` square, gray)
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
