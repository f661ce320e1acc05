"""A contact sheet: frames of a clip tiled into one image, to check crops at a glance."""

from typing import Optional

import numpy as np


def contact_sheet(frames: np.ndarray, columns: int = 10, max_frames: Optional[int] = None, gap: int = 2) -> np.ndarray:
    """Tile frames row by row.

    Args:
        frames: uint8 ``(T, H, W, 3)`` (or ``(T, H, W)`` gray).
        columns: Frames per row.
        max_frames: Show at most this many frames, evenly spaced over the clip (default all).
        gap: White pixels between tiles.

    Returns:
        uint8 ``(rows * (H + gap) - gap, columns * (W + gap) - gap, 3)`` image.
    """
    if frames.ndim == 3:
        frames = np.repeat(frames[..., None], 3, axis=-1)
    if frames.ndim != 4 or frames.shape[3] != 3 or len(frames) == 0:
        raise ValueError(f"expected frames (T > 0, H, W, 3), got {frames.shape}")
    if max_frames is not None and len(frames) > max_frames:
        frames = frames[np.linspace(0, len(frames) - 1, max_frames).round().astype(int)]
    count, height, width = frames.shape[:3]
    columns = min(columns, count)
    rows = -(-count // columns)
    sheet = np.full((rows * (height + gap) - gap, columns * (width + gap) - gap, 3), 255, dtype=np.uint8)
    for n, frame in enumerate(frames):
        row, column = divmod(n, columns)
        sheet[row * (height + gap):row * (height + gap) + height,
              column * (width + gap):column * (width + gap) + width] = frame
    return sheet


def save_png(path: str, image: np.ndarray) -> None:
    """Write a uint8 RGB image ``(H, W, 3)`` as PNG."""
    import matplotlib.image

    matplotlib.image.imsave(path, image)
