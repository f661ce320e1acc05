"""Alignment to Auto-AVSR's mean face by a similarity transform, and the affine map to the
mouth crop.

The reference is the geometry of Auto-AVSR's preparation (github mpc001/auto_avsr,
``preparation/detectors/*/video_process.py``): its "20 words" mean face is a 68-point face in a
256x256 frame, and a frame is aligned by fitting its four keypoints (eye centres, nose tip,
mouth centre) onto four points of that face: the centre of each eye's six points, the centre of
the five lower-nose points and the centre of the twenty lip points. :data:`MEAN_FACE` holds
those four positions (read from the repository's ``20words_mean_face.npy``). The fit is a
similarity transform (rotation, uniform scale, translation: the face keeps its shape); the
crop is then a ``crop_size`` square of that aligned 256x256 frame around the aligned mouth
centre. Auto-AVSR fits with OpenCV's ``estimateAffinePartial2D`` (LMEDS, then a least-squares
refinement over the points it keeps); with four points all of them are kept unless one is a
gross outlier, so the least-squares fit used here is the same transform.

Auto-AVSR cuts the crop from the aligned frame at whole pixels, rows and columns
``round(c - crop_size / 2) ...`` for a mouth centre at ``c``, which puts the mouth centre at
crop position ``crop_size / 2`` on average (pixel centres at integers: half a pixel right of
and below the middle of the crop). The map here puts it exactly there in every frame (one warp,
no rounding of the window's position).
"""

from typing import Tuple

import numpy as np

from preparation.mouth_crop.landmarks import KEYPOINTS

#: Mean-face position of each keypoint (:data:`KEYPOINTS` order) in the 256x256 aligned frame
#: (pixel centres at integers): Auto-AVSR's 20-word mean face, eye points 36-41 and 42-47, nose
#: points 31-35, lip points 48-67 averaged.
MEAN_FACE = np.array([
    [102.0739430571, 94.2723035239],   # right eye (image left)
    [156.3613054162, 93.5781560519],   # left eye
    [129.0037378702, 135.9034302860],  # nose
    [129.3133732259, 157.8229963492],  # mouth centre
])
MOUTH = KEYPOINTS.index("mouth_centre")


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


def crop_transforms(landmarks: np.ndarray, crop_size: int) -> Tuple[np.ndarray, np.ndarray]:
    """Affine maps from source pixels to crop pixels, one per frame.

    Args:
        landmarks: float ``(T, K, 2)`` keypoints in source pixels (already smoothed, no NaN).
        crop_size: Side of the square crop in pixels of the aligned 256x256 frame (96 in
            Auto-AVSR; another size widens or narrows the view, the face keeps its size).

    Returns:
        ``(to_crop, scale)``: float ``(T, 2, 3)`` maps taking a source pixel position to its
        crop pixel position (pixel centres at integers), and float ``(T,)`` crop pixels per
        source pixel. The mouth centre of ``landmarks`` maps exactly onto crop position
        ``(crop_size / 2, crop_size / 2)``.
    """
    maps = np.empty((len(landmarks), 2, 3))
    for t, points in enumerate(landmarks):
        align = similarity_transform(points, MEAN_FACE)
        mouth = apply_affine(align, points[MOUTH][None])[0]
        align[:, 2] += crop_size / 2.0 - mouth
        maps[t] = align
    scale = np.sqrt(np.abs(np.linalg.det(maps[:, :, :2])))
    return maps, scale
