"""The original ESPnet Transformer encoder: self-attention blocks without a convolution module."""

from typing import Any, Dict, Optional, Tuple

import torch

from espnet.nets.pytorch_backend.component_options import Option
from espnet.nets.pytorch_backend.dropout import Dropout
from espnet.nets.pytorch_backend.encoder.base_encoder import BaseEncoder
from espnet.nets.pytorch_backend.nets_utils import make_non_pad_mask
from espnet.nets.pytorch_backend.transformer.attention import MultiHeadedAttention
from espnet.nets.pytorch_backend.transformer.embedding import PositionalEncoding
from espnet.nets.pytorch_backend.transformer.layer_norm import LayerNorm
from espnet.nets.pytorch_backend.transformer.positionwise_feed_forward import PositionwiseFeedForward
from espnet.nets.pytorch_backend.transformer.repeat import repeat


class TransformerEncoderLayer(torch.nn.Module):
    """Pre-norm block (ESPnet ``EncoderLayer`` with ``normalize_before``): self-attention
    -> FFN, each ``x + Dropout(f(LayerNorm(x)))``.

    Shapes:
        ``x`` ``(B, T, D)``, ``mask`` ``(B, 1, T)`` bool (``True`` = valid) -> ``(B, T, D)``
        (mask passed through).
    """

    def __init__(self, size: int, heads: int, linear_units: int, dropout_rate: float,
                 attention_dropout_rate: float = 0.0) -> None:
        super().__init__()
        self.self_attn = MultiHeadedAttention(heads, size, attention_dropout_rate)
        self.feed_forward = PositionwiseFeedForward(size, linear_units, dropout_rate)
        self.norm1 = LayerNorm(size)
        self.norm2 = LayerNorm(size)
        self.dropout = Dropout(dropout_rate)

    def forward(self, x: torch.Tensor, mask: Optional[torch.Tensor]) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
        h = self.norm1(x)
        x = x + self.dropout(self.self_attn(h, h, h, mask))
        x = x + self.dropout(self.feed_forward(self.norm2(x)))
        return x, mask


class TransformerEncoder(BaseEncoder):
    """``--encoder transformer``: absolute sinusoidal positions (``x * sqrt(D) + PE``), then
    ``num_blocks`` pre-norm self-attention blocks and a final LayerNorm; padded frames are
    masked as keys, so a batch's padding never changes an utterance's valid frames.

    Args:
        attention_dim: Model size D (``adim``).
        attention_heads: Heads (``aheads``).
        linear_units: FFN inner size (option ``linear_units``, flag ``--eunits``).
        num_blocks: Number of blocks (option ``num_blocks``, flag ``--elayers``).
        dropout_rate: Dropout in FFN/residual/positional paths.

    Shapes:
        ``forward(xs (B, T, D), lengths (B,)) -> (B, T, D), lengths (B,)``.
    """

    options = (
        Option("linear_units", 3072, "Feed-forward units of each encoder block.", minimum=1, flag="--eunits"),
        Option("num_blocks", 12, "Encoder blocks.", minimum=1, flag="--elayers"),
    )

    def __init__(self, attention_dim: int = 768, attention_heads: int = 12, linear_units: int = 3072,
                 num_blocks: int = 12, dropout_rate: float = 0.1, attention_dropout_rate: float = 0.0) -> None:
        super().__init__()
        self.embed = PositionalEncoding(attention_dim, dropout_rate)
        self.encoders = repeat(num_blocks, lambda _: TransformerEncoderLayer(
            attention_dim, attention_heads, linear_units, dropout_rate, attention_dropout_rate))
        self.after_norm = LayerNorm(attention_dim)
        self.output_dim = attention_dim

    @classmethod
    def from_config(cls, config, options: Dict[str, Any]) -> "TransformerEncoder":
        return cls(attention_dim=config.adim, attention_heads=config.aheads, dropout_rate=config.dropout_rate,
                   **options)

    def forward(self, xs: torch.Tensor, lengths: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        mask = make_non_pad_mask(lengths.to(xs.device), xs.size(1)).unsqueeze(1)  # (B, 1, T)
        xs, _ = self.encoders(self.embed(xs), mask)
        return self.after_norm(xs), lengths
