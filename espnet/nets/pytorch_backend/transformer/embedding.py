"""Sinusoidal positional encodings (absolute for the decoder, relative for the encoder)."""

import math
from typing import Tuple

import torch

from espnet.nets.pytorch_backend.dropout import Dropout


def _sinusoid(positions: torch.Tensor, d_model: int) -> torch.Tensor:
    """Sin/cos table ``(len(positions), d_model)`` for float ``positions``."""
    div_term = torch.exp(
        torch.arange(0, d_model, 2, dtype=torch.float32) * -(math.log(10000.0) / d_model)
    )
    angles = positions.unsqueeze(1) * div_term
    table = torch.zeros(positions.numel(), d_model)
    table[:, 0::2] = torch.sin(angles)
    table[:, 1::2] = torch.cos(angles)
    return table


class _SinusoidalEncoding(torch.nn.Module):
    """Shared state: the scale ``sqrt(D)``, dropout and a cached table that grows on demand."""

    def __init__(self, d_model: int, dropout_rate: float, max_len: int = 5000) -> None:
        super().__init__()
        self.d_model = d_model
        self.xscale = math.sqrt(d_model)
        self.dropout = Dropout(p=dropout_rate)
        self.pe = self._table(max_len)

    def _table(self, length: int) -> torch.Tensor:
        raise NotImplementedError

    def _table_for(self, x: torch.Tensor, needed: int, length: int) -> torch.Tensor:
        """The table (rebuilt for ``length`` positions when shorter than ``needed``), on
        ``x``'s device and dtype."""
        if self.pe.size(1) < needed:
            self.pe = self._table(length)
        if self.pe.dtype != x.dtype or self.pe.device != x.device:
            self.pe = self.pe.to(dtype=x.dtype, device=x.device)
        return self.pe


class PositionalEncoding(_SinusoidalEncoding):
    """``x * sqrt(D) + PE[:T]`` followed by dropout.

    Shapes:
        ``(B, T, D) -> (B, T, D)``.
    """

    def _table(self, length: int) -> torch.Tensor:
        return _sinusoid(torch.arange(length, dtype=torch.float32), self.d_model).unsqueeze(0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pe = self._table_for(x, x.size(1), x.size(1))
        return self.dropout(x * self.xscale + pe[:, : x.size(1)])


class RelPositionalEncoding(_SinusoidalEncoding):
    """Scale ``x`` by ``sqrt(D)`` and return the relative position table for offsets
    ``T-1 ... -(T-1)``.

    Shapes:
        ``(B, T, D) -> ((B, T, D), (1, 2T-1, D))``.
    """

    def _table(self, length: int) -> torch.Tensor:
        pos = torch.arange(length, dtype=torch.float32)
        positive = torch.flip(_sinusoid(pos, self.d_model), [0])  # offsets length-1 .. 0
        negative = _sinusoid(-pos, self.d_model)[1:]  # offsets -1 .. -(length-1)
        return torch.cat([positive, negative], dim=0).unsqueeze(0)

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        t = x.size(1)
        pe = self._table_for(x, 2 * t - 1, t)
        center = pe.size(1) // 2
        pos_emb = pe[:, center - t + 1 : center + t]
        return self.dropout(x * self.xscale), self.dropout(pos_emb)
