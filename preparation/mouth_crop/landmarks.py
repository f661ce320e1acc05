"""Face keypoints per frame: the four points the cropper aligns on, and the MediaPipe
face-detection backend that finds them (the detector Auto-AVSR's MediaPipe preparation uses).

A backend turns one RGB frame into the :data:`KEYPOINTS` of one face, in source pixel
coordinates (x to the right, y down, pixel centres at integer positions), or ``None`` when it
finds no face. The cropper needs nothing else from a backend, so another detector only has to
map its own landmarks to these four points.

The MediaPipe backend runs the legacy ``mediapipe.solutions.face_detection`` graphs; their
models (full range, for faces up to about 5 m, and short range, up to about 2 m) ship inside
the ``mediapipe`` 0.10.21 wheel: it works offline.
"""

import importlib.util
import os
from typing import Optional, Protocol, Tuple

import numpy as np

#: Keypoint names, in the order of the ``(K, 2)`` arrays. "right"/"left" are the subject's
#: (the subject's right eye is on the image's left in a frontal view). These are the first four
#: of MediaPipe face detection's six keypoints, in its order.
KEYPOINTS: Tuple[str, ...] = ("right_eye", "left_eye", "nose_tip", "mouth_centre")
NUM_KEYPOINTS = len(KEYPOINTS)

INSTALL_HINT = ("pip install -r preparation/requirements.txt && "
                "pip install --no-deps -r preparation/requirements-nodeps.txt")
#: Detector graphs and models, relative to the installed ``mediapipe`` package.
FACE_DETECTION_MODELS = tuple(os.path.join("modules", "face_detection", name) for name in (
    "face_detection_full_range_cpu.binarypb", "face_detection_full_range_sparse.tflite",
    "face_detection_short_range_cpu.binarypb", "face_detection_short_range.tflite"))
#: ``model_selection`` of ``mediapipe.solutions.face_detection.FaceDetection`` per range.
FACE_DETECTION_RANGES = {"short": 0, "full": 1}


class LandmarkDetector(Protocol):
    """What the cropper needs from a landmark backend."""

    def detect(self, frame: np.ndarray) -> Optional[np.ndarray]:
        """Keypoints of one RGB uint8 frame ``(H, W, 3)``: float ``(K, 2)`` source pixels in
        :data:`KEYPOINTS` order, or ``None`` when no face is found."""

    def reset(self) -> None:
        """Forget any state carried between frames (called at the start of every clip)."""

    def close(self) -> None:
        """Release the backend's resources."""


def mediapipe_package_dir() -> str:
    """Directory of the installed ``mediapipe`` package, found without importing it.

    Raises:
        ImportError: ``mediapipe`` is not installed (the message gives the install command).
    """
    spec = importlib.util.find_spec("mediapipe")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("mouth cropping needs the `mediapipe` 0.10.21 face detector, which is not installed; "
                          f"install the data-preparation requirements: {INSTALL_HINT}")
    return list(spec.submodule_search_locations)[0]


def check_face_detection_models() -> str:
    """Check that the installed ``mediapipe`` ships the face-detection model files.

    Returns:
        The ``mediapipe`` package directory.

    Raises:
        ImportError: ``mediapipe`` is missing, or is a version without the bundled models.
    """
    package = mediapipe_package_dir()
    missing = [name for name in FACE_DETECTION_MODELS if not os.path.isfile(os.path.join(package, name))]
    if missing:
        raise ImportError(f"the mediapipe package at {package} does not ship the face-detection model files "
                          f"{', '.join(missing)} (only the 0.10.21 wheel bundles them; newer wheels ship none); "
                          f"install it with: {INSTALL_HINT}")
    return package


class MediaPipeFaceDetection:
    """MediaPipe face detection as a :class:`LandmarkDetector`: eye centres, nose tip and mouth
    centre of the face with the largest box.

    Args:
        face_range: ``"full"`` (model for faces up to about 5 m; what Auto-AVSR tries first)
            or ``"short"`` (up to about 2 m; its fallback for clips where the full-range
            model finds no face at all).
        min_detection_confidence: Detector score needed to accept a face.

    Every frame is detected on its own (no tracking). The graph is built on the first
    :meth:`detect`, so constructing this object is cheap and it can be made before worker
    processes fork.
    """

    def __init__(self, face_range: str = "full", min_detection_confidence: float = 0.5) -> None:
        if face_range not in FACE_DETECTION_RANGES:
            raise ValueError(f"face_range must be one of {sorted(FACE_DETECTION_RANGES)}, got {face_range!r}")
        if not 0.0 <= min_detection_confidence <= 1.0:
            raise ValueError(f"min_detection_confidence must be in [0, 1], got {min_detection_confidence}")
        check_face_detection_models()
        self.face_range = face_range
        self.min_detection_confidence = min_detection_confidence
        self._graph_instance = None

    def _graph(self):
        if self._graph_instance is None:
            from mediapipe.python.solutions import face_detection

            self._graph_instance = face_detection.FaceDetection(
                min_detection_confidence=self.min_detection_confidence,
                model_selection=FACE_DETECTION_RANGES[self.face_range])
        return self._graph_instance

    def detect(self, frame: np.ndarray) -> Optional[np.ndarray]:
        if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
            raise ValueError(f"expected an RGB uint8 frame (H, W, 3), got {frame.dtype} {frame.shape}")
        detections = self._graph().process(np.ascontiguousarray(frame)).detections
        if not detections:
            return None
        face = max(detections, key=lambda d: d.location_data.relative_bounding_box.width
                   * d.location_data.relative_bounding_box.height)
        height, width = frame.shape[:2]
        points = face.location_data.relative_keypoints[:NUM_KEYPOINTS]
        # normalised [0, 1] image coordinates -> pixels with centres at integer positions
        return np.array([[p.x * width - 0.5, p.y * height - 0.5] for p in points], dtype=np.float64)

    def reset(self) -> None:
        """Nothing to forget: frames are detected independently."""

    def close(self) -> None:
        if self._graph_instance is not None:
            self._graph_instance.close()
            self._graph_instance = None
