"""Warp a source frame into a square mouth crop (bilinear, with area pre-filtering when the
crop shrinks the face so that it does not alias), and the grayscale conversion before it."""

import functools

import numpy as np

from preparation.mouth_crop.alignment import invert_affine

_MARGIN = 2  # source pixels kept around the crop window's bounding box (bilinear neighbours)


@functools.lru_cache(maxsize=4)
def _crop_grid(crop_size: int) -> np.ndarray:
    """Homogeneous crop pixel positions ``(crop_size * crop_size, 3)``, row by row (read-only)."""
    grid_y, grid_x = np.mgrid[0:crop_size, 0:crop_size].astype(np.float64)
    grid = np.stack([grid_x.ravel(), grid_y.ravel(), np.ones(crop_size * crop_size)], axis=1)
    grid.flags.writeable = False
    return grid


def _block_mean(image: np.ndarray, factor: int) -> np.ndarray:
    """Average ``(H, W, C)`` over ``factor x factor`` blocks (the last, partial blocks over the
    pixels they have). Returns float32 ``(ceil(H / factor), ceil(W / factor), C)``."""
    height, width, channels = image.shape
    rows, cols = -(-height // factor), -(-width // factor)
    padded = np.zeros((rows * factor, cols * factor, channels), dtype=np.float32)
    padded[:height, :width] = image
    sums = padded.reshape(rows, factor, cols * factor, channels).sum(axis=1)
    sums = sums.reshape(rows, cols, factor, channels).sum(axis=2)
    row_count = np.minimum(factor, height - factor * np.arange(rows)).astype(np.float32)
    col_count = np.minimum(factor, width - factor * np.arange(cols)).astype(np.float32)
    return sums / (row_count[:, None, None] * col_count[None, :, None])


def sample_bilinear(image: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Bilinear samples of ``(H, W, C)`` at ``(N, 2)`` positions ``(x, y)`` (pixel centres at
    integers); neighbours outside the image count as 0. Returns float32 ``(N, C)``."""
    height, width = image.shape[:2]
    # zero pixels around the image (one before, two after): positions clipped into this frame
    # read 0 wherever the image has no pixel
    framed = np.zeros((height + 3, width + 3, image.shape[2]), dtype=np.float32)
    framed[1:height + 1, 1:width + 1] = image
    x = np.clip(points[:, 0] + 1, 0, width + 1)
    y = np.clip(points[:, 1] + 1, 0, height + 1)
    x0, y0 = np.floor(x).astype(np.intp), np.floor(y).astype(np.intp)
    fx, fy = (x - x0).astype(np.float32)[:, None], (y - y0).astype(np.float32)[:, None]
    top = framed[y0, x0] * (1 - fx) + framed[y0, x0 + 1] * fx
    bottom = framed[y0 + 1, x0] * (1 - fx) + framed[y0 + 1, x0 + 1] * fx
    return top * (1 - fy) + bottom * fy


#: ITU-R BT.601 luma weights of R, G, B (OpenCV's RGB2GRAY and torchvision's Grayscale).
LUMA_WEIGHTS = np.array([0.299, 0.587, 0.114], dtype=np.float32)


def to_gray(frame: np.ndarray) -> np.ndarray:
    """uint8 ``(H, W)`` luma of a uint8 RGB frame ``(H, W, 3)`` (BT.601 weights, rounded)."""
    if frame.ndim != 3 or frame.shape[2] != 3:
        raise ValueError(f"expected an RGB frame (H, W, 3), got {frame.shape}")
    return np.clip(np.round(frame @ LUMA_WEIGHTS), 0, 255).astype(np.uint8)


def warp_crop(frame: np.ndarray, to_crop: np.ndarray, crop_size: int) -> np.ndarray:
    """Sample one crop.

    Args:
        frame: uint8 source frame, ``(H, W)`` gray or ``(H, W, C)`` (e.g. RGB).
        to_crop: float ``(2, 3)`` affine map from source pixels to crop pixels (pixel centres at
            integer positions), e.g. one of
            :func:`~preparation.mouth_crop.alignment.crop_transforms`.
        crop_size: Side of the square crop in pixels.

    Returns:
        uint8 ``(crop_size, crop_size)`` or ``(crop_size, crop_size, C)`` like ``frame``; crop
        pixels that fall outside the source frame are black.

    Only the source pixels under the crop window (its bounding box plus a margin) are read,
    so the cost does not grow with the frame size. When the map shrinks the source by 2x or
    more (crop pixels per source pixel <= 1/2), that region is first averaged over ``k x k``
    blocks, ``k = floor(1 / scale)``, so that every crop pixel integrates the source pixels it
    covers instead of picking a few of them.
    """
    gray = frame.ndim == 2
    if gray:
        frame = frame[:, :, None]
    height, width, channels = frame.shape
    scale = float(np.sqrt(abs(np.linalg.det(to_crop[:, :2]))))
    factor = max(1, int(np.floor(1.0 / scale)))
    from_crop = invert_affine(to_crop)  # crop pixels -> source pixels
    last = crop_size - 1
    corners = np.array([[0, 0], [last, 0], [0, last], [last, last]], dtype=np.float64)
    window = corners @ from_crop[:, :2].T + from_crop[:, 2]
    margin = _MARGIN * factor
    x0 = max(0, int(np.floor(window[:, 0].min())) - margin)
    y0 = max(0, int(np.floor(window[:, 1].min())) - margin)
    x1 = min(width, int(np.ceil(window[:, 0].max())) + margin + 1)
    y1 = min(height, int(np.ceil(window[:, 1].max())) + margin + 1)
    if x1 <= x0 or y1 <= y0:  # the window lies outside the frame
        return np.zeros((crop_size, crop_size) + (() if gray else (channels,)), dtype=np.uint8)
    patch = frame[y0:y1, x0:x1]
    from_crop = from_crop.copy()
    from_crop[:, 2] -= (x0, y0)  # source pixels -> patch pixels
    if factor > 1:
        patch = _block_mean(patch, factor)
        # patch pixel x -> block (x + 0.5) / k - 0.5
        from_crop = from_crop / factor
        from_crop[:, 2] += 0.5 / factor - 0.5
    samples = sample_bilinear(patch, _crop_grid(crop_size) @ from_crop.T)
    crop = np.clip(np.round(samples), 0, 255).astype(np.uint8).reshape(crop_size, crop_size, channels)
    return crop[:, :, 0] if gray else crop

