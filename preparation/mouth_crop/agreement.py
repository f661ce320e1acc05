"""How closely two sets of mouth crops of the same frames agree: per-frame normalised
cross-correlation, and the zoom and shift that map one set best onto the other (to tell a
difference of geometry from one of content)."""

from dataclasses import dataclass
from typing import Tuple

import numpy as np

from preparation.mouth_crop.crop import sample_bilinear


def normalised_cross_correlation(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per-frame normalised cross-correlation of two crop stacks.

    Args:
        a, b: ``(T, H, W)`` (any real dtype).

    Returns:
        float ``(T,)`` in [-1, 1]: the correlation of the zero-mean pixels of each pair of frames
        (1 = equal up to brightness and contrast).

    Raises:
        ValueError: the shapes differ, or a frame is flat (no correlation is defined).
    """
    if a.shape != b.shape or a.ndim != 3:
        raise ValueError(f"expected two (T, H, W) stacks of equal shape, got {a.shape} and {b.shape}")
    a = a.reshape(len(a), -1).astype(np.float64)
    b = b.reshape(len(b), -1).astype(np.float64)
    a = a - a.mean(axis=1, keepdims=True)
    b = b - b.mean(axis=1, keepdims=True)
    norms = np.sqrt((a * a).sum(axis=1) * (b * b).sum(axis=1))
    if (norms == 0).any():
        raise ValueError(f"frames {np.flatnonzero(norms == 0).tolist()} are flat: no correlation is defined")
    return (a * b).sum(axis=1) / norms


def zoom_shift(crops: np.ndarray, scale: float, shift: Tuple[float, float]) -> np.ndarray:
    """Zoom ``(T, H, W)`` crops by ``scale`` about the crop centre, then shift them by
    ``shift = (dx, dy)`` pixels (bilinear; outside the crops reads 0).

    Returns:
        float32 ``(T, H, W)``: output pixel ``p`` is input position
        ``c + (p - c - shift) / scale``, ``c = ((W - 1) / 2, (H - 1) / 2)``.
    """
    count, height, width = crops.shape
    centre = np.array([(width - 1) / 2.0, (height - 1) / 2.0])
    grid_y, grid_x = np.mgrid[0:height, 0:width].astype(np.float64)
    points = np.stack([grid_x.ravel(), grid_y.ravel()], axis=1)
    source = centre + (points - centre - np.asarray(shift, dtype=np.float64)) / scale
    stack = np.moveaxis(crops, 0, -1)  # frames as channels: one sampling for all of them
    return np.moveaxis(sample_bilinear(stack, source), -1, 0).reshape(count, height, width)


@dataclass
class Agreement:
    """Agreement of crops ``ours`` with crops ``reference`` (:func:`crop_agreement`).

    Attributes:
        ncc: float ``(T,)`` per-frame normalised cross-correlation of the crops as they are.
        scale: Zoom of ``ours`` (about the crop centre) that matches ``reference`` best
            (> 1: the reference shows the mouth larger).
        shift: ``(dx, dy)`` pixels, applied after the zoom, that match best.
        matched_ncc: float ``(T,)`` per-frame correlation after that zoom and shift (over the
            crops' centre, without the margin).
    """

    ncc: np.ndarray
    scale: float
    shift: Tuple[float, float]
    matched_ncc: np.ndarray


def crop_agreement(ours: np.ndarray, reference: np.ndarray, margin: int = 12, scale_step: float = 0.02,
                   shift_step: float = 1.0, steps: int = 4) -> Agreement:
    """Compare two crop stacks of the same frames, and find the zoom and shift of ``ours``
    that maximises the mean correlation with ``reference``.

    The search is a pattern search from (scale 1, no shift): it moves by ``scale_step`` /
    ``shift_step`` along one parameter while the mean correlation improves, and halves the
    steps ``steps`` times when no move helps (final resolution ``scale_step / 2**steps`` and
    ``shift_step / 2**steps``). The correlation after a zoom or shift is taken over the crops
    without a ``margin`` on each side, where both crops have content.

    Args:
        ours, reference: ``(T, H, W)`` crops.
        margin: Pixels left out on each side when matching (covers zooms of about
            ``1 +- margin / (H / 2)`` with small shifts).
        scale_step, shift_step: First step sizes of the search.
        steps: Number of halvings of the steps.
    """
    ncc = normalised_cross_correlation(ours, reference)
    height, width = ours.shape[1:]
    if not 0 <= 2 * margin < min(height, width):
        raise ValueError(f"margin {margin} leaves nothing of {height}x{width} crops")
    inner = (slice(None), slice(margin, height - margin), slice(margin, width - margin))
    target = reference[inner]

    def score(params: np.ndarray) -> Tuple[float, np.ndarray]:
        per_frame = normalised_cross_correlation(zoom_shift(ours, params[0], (params[1], params[2]))[inner], target)
        return float(per_frame.mean()), per_frame

    params = np.array([1.0, 0.0, 0.0])
    best, best_frames = score(params)
    step = np.array([scale_step, shift_step, shift_step])
    for _ in range(steps + 1):
        moved = True
        while moved:
            moved = False
            for axis in range(3):
                for sign in (1.0, -1.0):
                    trial = params.copy()
                    trial[axis] += sign * step[axis]
                    value, frames = score(trial)
                    if value > best:
                        params, best, best_frames, moved = trial, value, frames, True
                        break
        step = step / 2
    return Agreement(ncc, float(params[0]), (float(params[1]), float(params[2])), best_frames)
