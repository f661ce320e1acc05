"""Warp source frames into square mouth crops (bilinear, with area pre-filtering when the
crop shrinks the face so that it does not alias)."""

import numpy as np
import torch
import torch.nn.functional as F

from preparation.mouth_crop.alignment import invert_affine


def warp_crops(frames: np.ndarray, to_crop: np.ndarray, crop_size: int) -> np.ndarray:
    """Sample one crop per frame.

    Args:
        frames: uint8 ``(T, H, W, 3)`` RGB source frames.
        to_crop: float ``(T, 2, 3)`` affine maps from source pixels to crop pixels (pixel
            centres at integer positions), e.g. from
            :func:`~preparation.mouth_crop.alignment.crop_transforms`.
        crop_size: Side of the square crop in pixels.

    Returns:
        uint8 ``(T, crop_size, crop_size, 3)``; crop pixels that fall outside the source frame
        are black.

    When a map shrinks the source by 2x or more (crop pixels per source pixel <= 1/2), the
    frame is first averaged over ``k x k`` blocks, ``k = floor(1 / scale)``, so that every
    crop pixel integrates the source pixels it covers instead of picking a few of them.
    """
    if frames.ndim != 4 or frames.shape[3] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"expected RGB uint8 frames (T, H, W, 3), got {frames.dtype} {frames.shape}")
    if to_crop.shape != (len(frames), 2, 3):
        raise ValueError(f"expected one (2, 3) map per frame, got {to_crop.shape} for {len(frames)} frames")
    if len(frames) == 0:
        return np.zeros((0, crop_size, crop_size, 3), dtype=np.uint8)
    scales = np.sqrt(np.abs(np.linalg.det(to_crop[:, :, :2])))
    factor = max(1, int(np.floor(1.0 / float(scales.max()))))  # one factor for the batch
    image = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float()
    from_crop = invert_affine(to_crop)  # crop pixels -> source pixels
    if factor > 1:
        image = F.avg_pool2d(image, factor, ceil_mode=True)
        # source pixel x -> pooled pixel (x + 0.5) / k - 0.5
        from_crop = from_crop / factor
        from_crop[:, :, 2] += 0.5 / factor - 0.5
    height, width = image.shape[2:]
    axis = torch.arange(crop_size, dtype=torch.float64)
    grid_y, grid_x = torch.meshgrid(axis, axis, indexing="ij")
    crop_points = torch.stack([grid_x, grid_y, torch.ones_like(grid_x)], dim=-1).reshape(-1, 3)  # (S*S, 3)
    source = torch.einsum("tij,pj->tpi", torch.from_numpy(from_crop), crop_points)  # (T, S*S, 2)
    # pixel centres at integers -> grid_sample's [-1, 1] (align_corners=False)
    size = torch.tensor([width, height], dtype=torch.float64)
    grid = ((2 * source + 1) / size - 1).reshape(len(frames), crop_size, crop_size, 2).float()
    crops = F.grid_sample(image, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return crops.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).contiguous().numpy()
