"""Face landmark detection: the keypoints the cropper uses and the MediaPipe face-mesh backend.

A backend turns one RGB frame into the :data:`KEYPOINTS` of the most prominent face, in
source pixel coordinates (x to the right, y down, pixel centres at integer positions), or
``None`` when it finds no face. The cropper needs nothing else from a backend, so another
detector only has to map its own landmarks to these names.

The MediaPipe backend runs the legacy ``mediapipe.solutions.face_mesh`` graph, whose face
detector (``face_detection_short_range.tflite``) and 468-point face-landmark model
(``face_landmark.tflite``) ship inside the ``mediapipe`` 0.10.21 wheel: it works offline.
"""

import importlib.util
import os
from typing import Dict, Optional, Protocol, Tuple

import numpy as np

#: Keypoint names, in the order of the ``(K, 2)`` arrays. "right"/"left" are the subject's
#: (the subject's right eye is on the image's left in a frontal view).
KEYPOINTS: Tuple[str, ...] = (
    "right_eye_outer", "right_eye_inner", "left_eye_inner", "left_eye_outer",
    "nose_bottom", "mouth_right", "mouth_left", "lip_top", "lip_bottom",
)
NUM_KEYPOINTS = len(KEYPOINTS)

#: Face-mesh vertex of each keypoint (MediaPipe's 468-vertex canonical mesh).
FACE_MESH_INDEX: Dict[str, int] = {
    "right_eye_outer": 33, "right_eye_inner": 133, "left_eye_inner": 362, "left_eye_outer": 263,
    "nose_bottom": 2, "mouth_right": 61, "mouth_left": 291, "lip_top": 0, "lip_bottom": 17,
}

INSTALL_HINT = ("pip install -r preparation/requirements.txt && "
                "pip install --no-deps -r preparation/requirements-nodeps.txt")
#: Model files the face-mesh graph loads, relative to the installed ``mediapipe`` package.
FACE_MESH_MODELS = (
    os.path.join("modules", "face_detection", "face_detection_short_range.tflite"),
    os.path.join("modules", "face_landmark", "face_landmark.tflite"),
    os.path.join("modules", "face_landmark", "face_landmark_front_cpu.binarypb"),
)


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
        raise ImportError("mouth cropping needs the `mediapipe` 0.10.21 face mesh, which is not installed; "
                          f"install the data-preparation requirements: {INSTALL_HINT}")
    return list(spec.submodule_search_locations)[0]


def check_face_mesh_models() -> str:
    """Check that the installed ``mediapipe`` ships the face-mesh model files.

    Returns:
        The ``mediapipe`` package directory.

    Raises:
        ImportError: ``mediapipe`` is missing, or is a version without the bundled models.
    """
    package = mediapipe_package_dir()
    missing = [name for name in FACE_MESH_MODELS if not os.path.isfile(os.path.join(package, name))]
    if missing:
        raise ImportError(f"the mediapipe package at {package} does not ship the face-mesh model files "
                          f"{', '.join(missing)} (only the 0.10.21 wheel bundles them; newer wheels ship none); "
                          f"install it with: {INSTALL_HINT}")
    return package


class MediaPipeFaceMesh:
    """MediaPipe face mesh (one face) as a :class:`LandmarkDetector`.

    Args:
        min_detection_confidence: Face-detector score needed to start tracking a face.
        min_tracking_confidence: Landmark-model presence score needed to keep tracking it
            (below it the detector runs again on the next frame).
        static_image_mode: Run the detector on every frame instead of tracking from the
            previous frame's landmarks (slower; frames are then independent).

    The graph is built on the first :meth:`detect`, so constructing this object is cheap and
    it can be made before worker processes fork.
    """

    def __init__(self, min_detection_confidence: float = 0.5, min_tracking_confidence: float = 0.5,
                 static_image_mode: bool = False) -> None:
        for name, value in (("min_detection_confidence", min_detection_confidence),
                            ("min_tracking_confidence", min_tracking_confidence)):
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {value}")
        check_face_mesh_models()
        self.min_detection_confidence = min_detection_confidence
        self.min_tracking_confidence = min_tracking_confidence
        self.static_image_mode = static_image_mode
        self._mesh = None
        self._indices = [FACE_MESH_INDEX[name] for name in KEYPOINTS]

    def _graph(self):
        if self._mesh is None:
            from mediapipe.python.solutions import face_mesh

            self._mesh = face_mesh.FaceMesh(static_image_mode=self.static_image_mode, max_num_faces=1,
                                            refine_landmarks=False,
                                            min_detection_confidence=self.min_detection_confidence,
                                            min_tracking_confidence=self.min_tracking_confidence)
        return self._mesh

    def detect(self, frame: np.ndarray) -> Optional[np.ndarray]:
        if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
            raise ValueError(f"expected an RGB uint8 frame (H, W, 3), got {frame.dtype} {frame.shape}")
        result = self._graph().process(np.ascontiguousarray(frame))
        if not result.multi_face_landmarks:
            return None
        mesh = result.multi_face_landmarks[0].landmark
        height, width = frame.shape[:2]
        # normalised [0, 1] image coordinates -> pixels with centres at integer positions
        return np.array([[mesh[i].x * width - 0.5, mesh[i].y * height - 0.5] for i in self._indices],
                        dtype=np.float64)

    def reset(self) -> None:
        if self._mesh is not None:
            self._mesh.reset()

    def close(self) -> None:
        if self._mesh is not None:
            self._mesh.close()
            self._mesh = None
