"""Continuous integrate-and-fire (CIF): the token-boundary predictor of the Paraformer.

Dong & Xu, "CIF: Continuous Integrate-and-Fire for End-to-End Speech Recognition" (ICASSP
2020); Gao et al., "Paraformer" (Interspeech 2022). Each encoder frame gets a weight
``alpha`` in (0, 1); walking over the frames, the weights are integrated and a token
*fires* each time the integral reaches the threshold (1.0). A token's acoustic embedding is
the sum of the frames it integrated, each weighted by the part of its ``alpha`` that went to
that token: a frame whose weight crosses the threshold splits between two tokens, and a
frame whose (rescaled, training-time) weight exceeds the threshold fires several tokens.

:func:`integrate_and_fire` computes this without a loop over frames: with the cumulative
sum ``c_t = alpha_1 + ... + alpha_t``, frame ``t`` covers the interval ``[c_{t-1}, c_t]``
of the integral and token ``k`` (0-based) the interval ``[k, k+1) * threshold``; the weight
of frame ``t`` in token ``k`` is the length of the overlap of the two intervals. That is
exactly what the sequential accumulation gives (up to float rounding) and is differentiable
in ``alpha``.
"""

from typing import Optional, Tuple, Union

import torch

from espnet.nets.pytorch_backend.dropout import Dropout
from espnet.nets.pytorch_backend.nets_utils import make_non_pad_mask, rows_by_candidate, rows_by_utterance


class CifPredictor(torch.nn.Module):
    """Per-frame weights ``alpha`` from the encoder output: a depthwise convolution over time
    (kernel ``kernel_size``, zero padding; padded frames are zeroed first, so a padded
    batch gives each utterance what it gets alone) with a residual connection and ReLU,
    then a linear layer to one value and a sigmoid (FunASR's ``CifPredictorV2`` layout,
    whose smoothing factor 1 and noise threshold 0 leave the sigmoid as it is).

    Args:
        size: Encoder output size ``D``.
        kernel_size: Frames of the convolution (odd; 3 = one frame of context each side,
            FunASR's ``l_order = r_order = 1``).
        dropout_rate: Dropout before the linear layer (training only).

    Shapes:
        ``forward(memory (B, T, D) float, memory_lengths (B,) int frames) -> alpha (B, T)``
        float in (0, 1) on real frames, exactly 0 on padded frames.
    """

    def __init__(self, size: int, kernel_size: int = 3, dropout_rate: float = 0.1) -> None:
        super().__init__()
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(f"the CIF convolution needs an odd kernel size, got {kernel_size}")
        self.conv = torch.nn.Conv1d(size, size, kernel_size, padding=kernel_size // 2, groups=size)
        self.dropout = Dropout(dropout_rate)
        self.output = torch.nn.Linear(size, 1)

    def forward(self, memory: torch.Tensor, memory_lengths: torch.Tensor) -> torch.Tensor:
        mask = make_non_pad_mask(memory_lengths.to(memory.device), memory.size(1))  # (B, T)
        x = memory.masked_fill(~mask.unsqueeze(-1), 0.0)
        h = torch.relu(self.conv(x.transpose(1, 2)).transpose(1, 2) + x)
        alpha = torch.sigmoid(self.output(self.dropout(h))).squeeze(-1)
        return alpha.masked_fill(~mask, 0.0)


def fired_counts(alpha: torch.Tensor, threshold: float = 1.0, tail_threshold: float = 0.0) -> torch.Tensor:
    """Tokens that fire from ``alpha`` ``(B, T)``: ``floor(sum(alpha) / threshold)``, plus one
    when the remainder ``r`` left after the last frame satisfies ``r + tail_threshold >=
    threshold`` (FunASR's tail rule: a frame of weight ``tail_threshold`` appended after the
    last one; 0 = no tail token). Returns ``(B,)`` int64."""
    total = alpha.sum(dim=1, dtype=torch.float64)
    full = torch.floor(total / threshold)
    remainder = total - full * threshold
    tail = (remainder > 0) & (remainder + tail_threshold >= threshold) if tail_threshold > 0 else torch.zeros_like(
        remainder, dtype=torch.bool)
    return (full + tail.to(full.dtype)).long()


def integrate_and_fire(hidden: torch.Tensor, alpha: torch.Tensor, threshold: float = 1.0,
                       counts: Optional[torch.Tensor] = None, tail_threshold: float = 0.0,
                       open_last: Optional[torch.Tensor] = None) -> Tuple[torch.Tensor, torch.Tensor]:
    """Acoustic embeddings of the tokens that fire.

    Args:
        hidden: Encoder output ``(B, T, D)``.
        alpha: Weights ``(N, T)`` >= 0, 0 on padded frames (any positive values: rescaled
            training weights may exceed 1, a frame then fires several tokens). ``N = B``, or
            ``N = S * B`` for ``S`` weightings of each utterance (decoding candidates: row
            ``s * B + i`` weighs utterance ``i``), which then share one product with its
            frames instead of ``S`` copies of ``hidden``.
        threshold: Integral per token (> 0).
        counts: ``(N,)`` tokens to emit per row, or ``None`` for those that fire
            (:func:`fired_counts` with ``tail_threshold``). Training passes the target
            lengths with ``alpha`` rescaled to sum to ``counts * threshold``: the last token
            then takes everything after the previous one, so float rounding of the sum
            neither drops nor adds a token.
        tail_threshold: Tail rule of :func:`fired_counts` when ``counts`` is ``None``.
        open_last: ``(N,)`` bool, with ``counts``: the rows whose last token takes everything
            after the previous one (the others fire as their weights do, as the tokens that
            fire from unscaled weights with their :func:`fired_counts`); ``None``: every row.

    Returns:
        ``embeddings`` ``(N, K, D)`` (``K = max(counts)``, zero after each row's count) and
        ``counts`` ``(N,)`` int64. Token ``k``'s embedding is ``sum_t w[k, t] * hidden[t]``
        where ``w[k, t]`` is the part of ``alpha_t`` integrated into token ``k``.
    """
    if threshold <= 0:
        raise ValueError(f"the CIF threshold must be > 0, got {threshold}")
    b = hidden.size(0)
    if alpha.size(0) != b and (b == 0 or alpha.size(0) % b):
        raise ValueError(f"CIF: {alpha.size(0)} rows of weights for {b} utterances (not a multiple)")
    if counts is None:
        counts, open_last = fired_counts(alpha, threshold, tail_threshold), False
    elif open_last is None:
        open_last = True
    counts = counts.to(alpha.device).long()
    n = alpha.size(0)
    k = int(counts.max()) if n else 0
    if k == 0:
        return hidden.new_zeros(n, 0, hidden.size(-1)), counts
    weights = fire_weights(alpha, counts, threshold, k, open_last).to(hidden.dtype)  # (N, K, T)
    if n == b:
        return torch.bmm(weights, hidden), counts
    shared = torch.bmm(rows_by_utterance(weights, b), hidden)  # (B, S*K, D): one product per utterance
    return rows_by_candidate(shared, n // b), counts


def fire_weights(alpha: torch.Tensor, counts: torch.Tensor, threshold: float, k: int,
                 open_last: Union[bool, torch.Tensor] = False) -> torch.Tensor:
    """``(B, K, T)`` weights of frame ``t`` in token ``k``: the overlap of ``[c_{t-1}, c_t]``
    (``c`` the cumulative sum of ``alpha``) with token ``k``'s interval ``[k, k + 1) *
    threshold``; tokens from ``counts`` on get nothing. ``open_last`` (every row, or a
    ``(B,)`` bool of rows): the last token of each such row (index ``counts - 1``) has no
    upper end (it takes the rest of the integral)."""
    a = alpha.float()
    end = torch.cumsum(a, dim=1).unsqueeze(1)  # (B, 1, T)
    start = end - a.unsqueeze(1)
    index = torch.arange(k, device=alpha.device, dtype=torch.float32).view(1, k, 1)
    low = index * threshold
    high = (index + 1) * threshold
    high = high.expand(alpha.size(0), k, 1)
    if isinstance(open_last, torch.Tensor) or open_last:
        last = index == (counts.view(-1, 1, 1) - 1).float()  # (B, K, 1)
        if isinstance(open_last, torch.Tensor):
            last = last & open_last.to(alpha.device).view(-1, 1, 1)
        high = torch.where(last, torch.full_like(high, float("inf")), high)
    overlap = (torch.minimum(end, high) - torch.maximum(start, low)).clamp(min=0.0)
    return overlap.masked_fill(index >= counts.view(-1, 1, 1).float(), 0.0)


def scale_to_lengths(alpha: torch.Tensor, target_lengths: torch.Tensor, threshold: float = 1.0) -> torch.Tensor:
    """Training: ``alpha`` ``(B, T)`` rescaled per utterance so that it sums to
    ``target_lengths * threshold`` (an utterance whose weights are all 0 stays 0)."""
    total = alpha.sum(dim=1, keepdim=True)
    wanted = target_lengths.to(alpha.device, alpha.dtype).unsqueeze(1) * threshold
    return alpha * (wanted / total.clamp(min=torch.finfo(alpha.dtype).tiny))
