"""Attention masks (``True`` = may attend)."""

from typing import Optional

import torch


def subsequent_mask(size: int, device: Optional[torch.device] = None) -> torch.Tensor:
    """Lower-triangular causal mask of shape ``(size, size)``, dtype bool."""
    return torch.ones(size, size, dtype=torch.bool, device=device).tril_()


def target_mask(ys_in_pad: torch.Tensor, ignore_id: int) -> torch.Tensor:
    """Causal mask combined with the padding of ``ys_in_pad``.

    Args:
        ys_in_pad: Decoder input ids ``(B, L)``.
        ignore_id: Padding id.

    Returns:
        Bool mask ``(B, L, L)``.
    """
    valid = ys_in_pad != ignore_id
    causal = subsequent_mask(ys_in_pad.size(-1), device=ys_in_pad.device).unsqueeze(0)
    return valid.unsqueeze(-2) & causal
