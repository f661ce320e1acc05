"""Padding, masking and accuracy helpers shared by every stage."""

from typing import List, Optional, Sequence, Union

import torch


def pad_list(xs: Sequence[torch.Tensor], pad_value: float) -> torch.Tensor:
    """Stack tensors of shape ``(T_i, *)`` into ``(B, max T_i, *)`` filled with ``pad_value``."""
    max_len = max(x.size(0) for x in xs)
    out = xs[0].new_full((len(xs), max_len, *xs[0].shape[1:]), pad_value)
    for i, x in enumerate(xs):
        out[i, : x.size(0)] = x
    return out


def make_pad_mask(
    lengths: Union[torch.Tensor, List[int]], maxlen: Optional[int] = None
) -> torch.Tensor:
    """Bool mask ``(B, maxlen)`` that is ``True`` on padded positions.

    Args:
        lengths: Valid lengths ``(B,)``.
        maxlen: Width of the mask; defaults to ``max(lengths)``.
    """
    lengths = torch.as_tensor(lengths)
    if maxlen is None:
        maxlen = int(lengths.max().item()) if lengths.numel() else 0
    positions = torch.arange(maxlen, device=lengths.device)
    return positions.unsqueeze(0) >= lengths.unsqueeze(1)


def make_non_pad_mask(
    lengths: Union[torch.Tensor, List[int]], maxlen: Optional[int] = None
) -> torch.Tensor:
    """Bool mask ``(B, maxlen)`` that is ``True`` on valid positions."""
    return ~make_pad_mask(lengths, maxlen)


def rows_by_utterance(x: torch.Tensor, utterances: int) -> torch.Tensor:
    """``N = S * B`` rows ``(N, L, F)`` of ``B`` utterances (the ``s``-th of utterance ``i``
    at row ``s * B + i``, the layout of decoding candidates) as ``(B, S * L, F)``: each
    utterance's ``S`` rows one after another, for one product with that utterance's frames.
    :func:`rows_by_candidate` undoes it."""
    n, length = x.shape[:2]
    slots = n // utterances
    return x.view(slots, utterances, length, -1).transpose(0, 1).reshape(utterances, slots * length, -1)


def rows_by_candidate(x: torch.Tensor, slots: int) -> torch.Tensor:
    """``(B, S * L, F)`` (:func:`rows_by_utterance`) back to ``(S * B, L, F)``."""
    b, width = x.shape[:2]
    length = width // slots
    return x.view(b, slots, length, -1).transpose(0, 1).reshape(slots * b, length, -1)


def th_accuracy(pad_outputs: torch.Tensor, pad_targets: torch.Tensor, ignore_label: int) -> float:
    """Token accuracy of ``argmax(pad_outputs)`` against ``pad_targets``, ignoring padding.

    Args:
        pad_outputs: Logits ``(B * L, V)``.
        pad_targets: Targets ``(B, L)``.
    """
    pred = pad_outputs.view(pad_targets.size(0), pad_targets.size(1), -1).argmax(2)
    mask = pad_targets != ignore_label
    correct = (pred.masked_select(mask) == pad_targets.masked_select(mask)).sum()
    return float(correct) / float(mask.sum())
