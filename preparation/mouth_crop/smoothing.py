"""Landmark tracks over time: fill frames without a face, then smooth (as Auto-AVSR does)."""

import numpy as np


def fill_missing(landmarks: np.ndarray) -> np.ndarray:
    """Fill the frames where no face was found by interpolating the neighbouring frames.

    Args:
        landmarks: float ``(T, K, 2)``; a frame without a face is all NaN.

    Returns:
        float ``(T, K, 2)`` without NaN: a missing frame between two detected frames gets the
        linear interpolation of the two (in time), missing frames before the first or after
        the last detection repeat that detection.

    Raises:
        ValueError: no frame has landmarks, or a frame is only partly NaN.
    """
    if landmarks.ndim != 3 or landmarks.shape[2] != 2:
        raise ValueError(f"expected landmarks of shape (T, K, 2), got {landmarks.shape}")
    missing = np.isnan(landmarks)
    per_frame = missing.reshape(len(landmarks), -1)
    found = ~per_frame.any(axis=1)
    if (per_frame.any(axis=1) & ~per_frame.all(axis=1)).any():
        raise ValueError("a frame has some landmarks missing and others present; a frame is all or nothing")
    if not found.any():
        raise ValueError("no frame has landmarks to interpolate from")
    if found.all():
        return landmarks.astype(np.float64, copy=True)
    times = np.arange(len(landmarks))
    flat = landmarks.reshape(len(landmarks), -1)
    filled = np.empty_like(flat, dtype=np.float64)
    for column in range(flat.shape[1]):
        filled[:, column] = np.interp(times, times[found], flat[found, column])
    return filled.reshape(landmarks.shape)


def smooth(track: np.ndarray, window: int) -> np.ndarray:
    """Centred moving average over time (no lag), shrinking symmetrically at the ends.

    Args:
        track: float ``(T, ...)`` without NaN.
        window: Odd number of frames averaged (1 = unchanged).

    Returns:
        float array of the same shape; frame ``t`` is the mean of frames
        ``t - h .. t + h`` with ``h = min((window - 1) // 2, t, T - 1 - t)``.
    """
    if window < 1 or window % 2 == 0:
        raise ValueError(f"smoothing window must be a positive odd number of frames, got {window}")
    track = np.asarray(track, dtype=np.float64)
    if window == 1 or len(track) < 3:
        return track.copy()
    steps = len(track)
    cumulative = np.concatenate([np.zeros((1,) + track.shape[1:]), np.cumsum(track, axis=0)])
    t = np.arange(steps)
    half = np.minimum.reduce([np.full(steps, (window - 1) // 2), t, steps - 1 - t])
    total = cumulative[t + half + 1] - cumulative[t - half]
    return total / (2 * half + 1).reshape((-1,) + (1,) * (track.ndim - 1))


def smooth_shape(landmarks: np.ndarray, window: int) -> np.ndarray:
    """Smooth the keypoints' configuration over time but keep each frame's own position.

    Auto-AVSR's smoothing: every keypoint is averaged over the centred ``window`` (see
    :func:`smooth`), then the averaged keypoints are shifted so that their centroid is the
    frame's own (unsmoothed) centroid. Size and rotation, which the alignment reads from the
    distances between the points, change smoothly; the position follows the head without lag.

    Args:
        landmarks: float ``(T, K, 2)`` without NaN.
        window: Odd number of frames averaged (Auto-AVSR: 13, i.e. +-6 frames).

    Returns:
        float ``(T, K, 2)``.
    """
    if landmarks.ndim != 3 or landmarks.shape[2] != 2:
        raise ValueError(f"expected landmarks of shape (T, K, 2), got {landmarks.shape}")
    averaged = smooth(landmarks, window)
    return averaged + (landmarks.mean(axis=1, keepdims=True) - averaged.mean(axis=1, keepdims=True))
