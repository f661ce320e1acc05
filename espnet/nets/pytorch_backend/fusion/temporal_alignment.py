"""Bringing a feature stream to another frame rate without reading its padding."""

from typing import Tuple

import torch

from espnet.nets.pytorch_backend.nets_utils import make_non_pad_mask


def resample_stream(
    x: torch.Tensor, lengths: torch.Tensor, src_rate: float, dst_rate: float
) -> Tuple[torch.Tensor, torch.Tensor]:
    """Resample ``x`` ``(B, T, D)`` at ``src_rate`` Hz to ``dst_rate`` Hz.

    * equal rates: unchanged;
    * integer down-sampling by ``k``: mean over each window of ``k`` frames, counting only
      valid frames (a partial last window is averaged over what it has); lengths
      ``ceil(len / k)``;
    * any other ratio: linear interpolation at times ``j / dst_rate``, with source indices
      clamped to each item's own valid range; lengths ``floor(len * dst / src)`` (at least 1).

    Padded output frames are zero.
    """
    if src_rate <= 0 or dst_rate <= 0:
        raise ValueError(f"frame rates must be positive, got {src_rate} and {dst_rate}")
    if src_rate == dst_rate:
        return x, lengths
    b, t, d = x.shape
    ratio = src_rate / dst_rate
    k = round(ratio)
    if ratio > 1 and abs(ratio - k) < 1e-6:
        t_out = -(-t // k)
        mask = make_non_pad_mask(lengths, t).to(x.device).unsqueeze(-1).to(x.dtype)
        pad = t_out * k - t
        xs = torch.nn.functional.pad(x * mask, (0, 0, 0, pad)).view(b, t_out, k, d).sum(2)
        counts = torch.nn.functional.pad(mask, (0, 0, 0, pad)).view(b, t_out, k, 1).sum(2)
        out_lengths = torch.div(lengths + k - 1, k, rounding_mode="floor")
        return xs / counts.clamp_min(1.0), out_lengths
    out_lengths = torch.clamp(torch.floor(lengths.to(torch.float64) * dst_rate / src_rate).long(), min=1)
    t_out = int(out_lengths.max())
    pos = torch.arange(t_out, device=x.device, dtype=torch.float64).unsqueeze(0) * ratio  # (1, T')
    last = (lengths.to(x.device) - 1).clamp_min(0).unsqueeze(1).to(torch.float64)
    pos = torch.minimum(pos.expand(b, -1), last)
    lo = pos.floor().long()
    hi = torch.minimum(lo + 1, last.long())
    w = (pos - lo.to(torch.float64)).to(x.dtype).unsqueeze(-1)
    gather = lambda idx: torch.gather(x, 1, idx.unsqueeze(-1).expand(-1, -1, d))  # noqa: E731
    out = gather(lo) * (1 - w) + gather(hi) * w
    valid = make_non_pad_mask(out_lengths, t_out).to(x.device).unsqueeze(-1)
    return out.masked_fill(~valid, 0.0), out_lengths
