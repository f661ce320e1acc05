"""Alignment to a mean face by a similarity transform, and the affine map to the mouth crop.

The mean face is a frontal adult face in millimetres (x to the image's right, y down, origin
midway between the inner eye corners), from typical anthropometric proportions: outer eye
corners 90 mm apart, inner eye corners 32 mm apart, the bottom of the nose 42 mm below the
eyes, mouth corners 50 mm apart and 62 mm below the eyes, lips from 55 mm to 71 mm. Each frame
is mapped onto it by the least-squares similarity transform (rotation, uniform scale,
translation: no shear, so the face keeps its shape) fitted on the eye corners, the bottom of the
nose and the mouth corners; the lip midpoints, which move most when speaking, do not steer the
fit. The crop is then a square of ``crop_size`` pixels centred on the mouth centre (mean of the
mouth corners and the lip midpoints) in that aligned frame, scaled so that the mean face's mouth
is ``mouth_width`` of the crop wide.
"""

from typing import Tuple

import numpy as np

from preparation.mouth_crop.landmarks import KEYPOINTS

#: Mean-face position of each keypoint in millimetres, in :data:`KEYPOINTS` order.
MEAN_FACE_MM = np.array([
    [-45.0, 0.0],   # right_eye_outer
    [-16.0, 0.0],   # right_eye_inner
    [16.0, 0.0],    # left_eye_inner
    [45.0, 0.0],    # left_eye_outer
    [0.0, 42.0],    # nose_bottom
    [-25.0, 62.0],  # mouth_right
    [25.0, 62.0],   # mouth_left
    [0.0, 55.0],    # lip_top
    [0.0, 71.0],    # lip_bottom
])
MEAN_MOUTH_WIDTH_MM = 50.0
#: Keypoints the similarity transform is fitted on.
ALIGN_POINTS = tuple(KEYPOINTS.index(name) for name in (
    "right_eye_outer", "right_eye_inner", "left_eye_inner", "left_eye_outer",
    "nose_bottom", "mouth_right", "mouth_left"))
#: Keypoints whose mean is the mouth centre.
MOUTH_POINTS = tuple(KEYPOINTS.index(name) for name in ("mouth_right", "mouth_left", "lip_top", "lip_bottom"))


def mouth_centre(landmarks: np.ndarray) -> np.ndarray:
    """Mouth centre ``(..., 2)`` of keypoints ``(..., K, 2)``."""
    return landmarks[..., MOUTH_POINTS, :].mean(axis=-2)


def similarity_transform(source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Least-squares similarity transform taking ``source`` points onto ``target`` points.

    Args:
        source: float ``(N, 2)``, N >= 2 distinct points.
        target: float ``(N, 2)``.

    Returns:
        float ``(2, 3)`` matrix ``[[a, -b, tx], [b, a, ty]]`` minimising
        ``sum ||A @ [x, y, 1] - target||^2`` (scale ``hypot(a, b)``, rotation ``atan2(b, a)``).
    """
    source = np.asarray(source, dtype=np.float64)
    target = np.asarray(target, dtype=np.float64)
    if source.shape != target.shape or source.ndim != 2 or source.shape[1] != 2 or len(source) < 2:
        raise ValueError(f"expected two (N >= 2, 2) point sets of equal shape, got {source.shape} and {target.shape}")
    src_mean, dst_mean = source.mean(axis=0), target.mean(axis=0)
    src, dst = source - src_mean, target - dst_mean
    norm = float((src ** 2).sum())
    if norm <= 1e-12:
        raise ValueError("the source points coincide: no similarity transform is defined")
    a = float((src * dst).sum()) / norm
    b = float((src[:, 0] * dst[:, 1] - src[:, 1] * dst[:, 0]).sum()) / norm
    rotation = np.array([[a, -b], [b, a]])
    return np.concatenate([rotation, (dst_mean - rotation @ src_mean)[:, None]], axis=1)


def apply_affine(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Apply ``(2, 3)`` (or batched ``(T, 2, 3)`` with points ``(T, N, 2)``) affine maps to
    points ``(..., N, 2)``."""
    return points @ np.swapaxes(matrix[..., :2], -1, -2) + matrix[..., None, :, 2]


def invert_affine(matrix: np.ndarray) -> np.ndarray:
    """Inverse of ``(..., 2, 3)`` affine maps."""
    linear = np.linalg.inv(matrix[..., :2])
    shift = -(linear @ matrix[..., 2:])
    return np.concatenate([linear, shift], axis=-1)


def mean_face(crop_size: int, mouth_width: float) -> np.ndarray:
    """Mean-face keypoints ``(K, 2)`` in crop pixels, before centring on the mouth.

    Args:
        crop_size: Side of the square crop in pixels.
        mouth_width: Mouth width of the mean face as a fraction of ``crop_size``.
    """
    if not 0.05 <= mouth_width <= 0.95:
        raise ValueError(f"mouth_width must be a fraction of the crop in [0.05, 0.95], got {mouth_width}")
    return MEAN_FACE_MM * (mouth_width * crop_size / MEAN_MOUTH_WIDTH_MM)


def crop_transforms(landmarks: np.ndarray, crop_size: int, mouth_width: float) -> Tuple[np.ndarray, np.ndarray]:
    """Affine maps from source pixels to crop pixels, one per frame.

    Args:
        landmarks: float ``(T, K, 2)`` keypoints in source pixels (already smoothed, no NaN).
        crop_size: Side of the square crop in pixels.
        mouth_width: Mouth width of the mean face as a fraction of ``crop_size``.

    Returns:
        ``(to_crop, scale)``: float ``(T, 2, 3)`` maps taking a source pixel position to its
        crop pixel position (pixel centres at integers, the crop centre at
        ``((crop_size - 1) / 2, (crop_size - 1) / 2)``), and float ``(T,)`` crop pixels per
        source pixel. The mouth centre of ``landmarks`` maps exactly onto the crop centre.
    """
    reference = mean_face(crop_size, mouth_width)[list(ALIGN_POINTS)]
    centre = (crop_size - 1) / 2.0
    maps = np.empty((len(landmarks), 2, 3))
    for t, points in enumerate(landmarks):
        align = similarity_transform(points[list(ALIGN_POINTS)], reference)
        mouth = apply_affine(align, mouth_centre(points)[None])[0]
        align[:, 2] += centre - mouth
        maps[t] = align
    scale = np.sqrt(np.abs(np.linalg.det(maps[:, :, :2])))
    return maps, scale
