"""Decoder input/output construction for teacher forcing."""

from typing import Optional, Sequence, Tuple

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


def sos_eos_from_lists(
    hyps: Sequence[Sequence[int]], sos: int, eos: int, ignore_id: int, device: Optional[torch.device] = None
) -> Tuple[torch.Tensor, torch.Tensor]:
    """:func:`add_sos_eos` of token-id lists (decoding hypotheses): ``ys_in`` ``(N, L+1)``
    (``sos`` + ids, padded with ``eos``) and ``ys_out`` ``(N, L+1)`` (ids + ``eos``, padded
    with ``ignore_id``), ``L`` the longest list, each built in one tensor from Python lists."""
    width = max((len(h) for h in hyps), default=0)
    ys_in = [[sos, *h] + [eos] * (width - len(h)) for h in hyps]
    ys_out = [[*h, eos] + [ignore_id] * (width - len(h)) for h in hyps]
    return (torch.tensor(ys_in, dtype=torch.long, device=device),
            torch.tensor(ys_out, dtype=torch.long, device=device))
