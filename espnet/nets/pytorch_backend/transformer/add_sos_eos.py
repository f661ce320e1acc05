"""Decoder input/output construction for teacher forcing."""

from typing import Tuple

import torch

from espnet.nets.pytorch_backend.nets_utils import pad_list


def add_sos_eos(
    ys_pad: torch.Tensor, sos: int, eos: int, ignore_id: int
) -> Tuple[torch.Tensor, torch.Tensor]:
    """Prefix ``sos`` to the decoder inputs and append ``eos`` to the targets.

    Args:
        ys_pad: Target ids ``(B, L)`` padded with ``ignore_id``.

    Returns:
        ``ys_in`` ``(B, L+1)`` padded with ``eos`` and ``ys_out`` ``(B, L+1)`` padded
        with ``ignore_id``.
    """
    sos_t = ys_pad.new_full((1,), sos)
    eos_t = ys_pad.new_full((1,), eos)
    ys = [y[y != ignore_id] for y in ys_pad]
    ys_in = [torch.cat([sos_t, y]) for y in ys]
    ys_out = [torch.cat([y, eos_t]) for y in ys]
    return pad_list(ys_in, eos), pad_list(ys_out, ignore_id)
