"""Attention-bottleneck fusion (MBT: Nagrani et al., 2021, "Attention Bottlenecks for
Multimodal Fusion"), producing per-frame features for the Conformer."""

from typing import Tuple

import torch

from espnet.nets.pytorch_backend.component_options import Option

from espnet.nets.pytorch_backend.dropout import Dropout
from espnet.nets.pytorch_backend.fusion.base_fusion import BaseFusion
from espnet.nets.pytorch_backend.transformer.attention import MultiHeadedAttention
from espnet.nets.pytorch_backend.transformer.layer_norm import LayerNorm
from espnet.nets.pytorch_backend.transformer.positionwise_feed_forward import PositionwiseFeedForward


class BottleneckStreamLayer(torch.nn.Module):
    """One pre-norm Transformer block of one stream, run over the stream's frames followed
    by the shared bottleneck tokens: ``y = x + MHA(LN(x))``, ``y = y + FFN(LN(y))``.

    Shapes:
        ``x`` ``(B, T + N, D)``, ``key_mask`` ``(B, 1, T + N)`` bool (``True`` = may be
        attended to) -> ``(B, T + N, D)``.
    """

    def __init__(self, size: int, heads: int, linear_units: int, dropout_rate: float) -> None:
        super().__init__()
        self.norm_attn = LayerNorm(size)
        self.self_attn = MultiHeadedAttention(heads, size, dropout_rate)
        self.norm_ff = LayerNorm(size)
        self.feed_forward = PositionwiseFeedForward(size, linear_units, dropout_rate)
        self.dropout = Dropout(dropout_rate)

    def forward(self, x: torch.Tensor, key_mask: torch.Tensor) -> torch.Tensor:
        h = self.norm_attn(x)
        x = x + self.dropout(self.self_attn(h, h, h, key_mask))
        return x + self.dropout(self.feed_forward(self.norm_ff(x)))


class BottleneckFusion(BaseFusion):
    """Two Transformer streams that exchange information only through ``num_tokens``
    shared bottleneck tokens, over ``num_layers`` layers.

    In every layer each stream attends over its own valid frames and the bottleneck
    tokens (padded frames are masked as keys in every attention); the two updated copies
    of the bottleneck tokens are then averaged into the tokens of the next layer (MBT's
    ``z = mean(z_video, z_audio)``). The output is per frame:
    ``Linear([LN(v_L); LN(a_L)])``, so the Conformer gets ``(B, T, out_dim)`` rather than
    MBT's pooled classification token. No positional encoding is added (the Conformer
    after the fusion has relative positions; the frontends' features are local in time).

    Args:
        vision_dim, audio_dim: Input sizes (projected to ``out_dim`` first).
        out_dim: Model size D (the encoder size ``adim``).
        num_tokens: Bottleneck tokens N (MBT uses 4).
        num_layers: Fusion layers L.
        heads: Attention heads (must divide ``out_dim``).
        linear_units: Hidden size of each block's feed-forward network.
        dropout_rate: Dropout on attention weights and residual branches.

    Shapes:
        ``v`` ``(B, T, Dv)``, ``a`` ``(B, T, Da)`` at one frame rate, ``mask`` ``(B, T)``
        (``True`` = valid) -> ``(B, T, out_dim)``; padded output frames are zero.
    """

    options = (
        Option("num_tokens", 4, "Shared bottleneck tokens of the bottleneck fusion.", minimum=1,
               flag="--bottleneck-tokens"),
        Option("num_layers", 2, "Layers of the bottleneck fusion (the streams exchange information from the "
               "second on).", minimum=1, flag="--bottleneck-layers"),
        Option("linear_units", 3072, "Feed-forward units of each bottleneck fusion layer.", minimum=1,
               flag="--eunits"),
    )

    def __init__(self, vision_dim: int, audio_dim: int, out_dim: int, num_tokens: int = 4, num_layers: int = 2,
                 heads: int = 4, linear_units: int = 1024, dropout_rate: float = 0.1) -> None:
        super().__init__(vision_dim, audio_dim, out_dim)
        if num_tokens < 1 or num_layers < 1:
            raise ValueError(f"bottleneck fusion needs >= 1 token and >= 1 layer, got {num_tokens} and {num_layers}")
        self.num_tokens = num_tokens
        self.proj_vision = torch.nn.Linear(vision_dim, out_dim)
        self.proj_audio = torch.nn.Linear(audio_dim, out_dim)
        self.bottleneck = torch.nn.Parameter(torch.randn(num_tokens, out_dim) * 0.02)
        self.vision_layers = torch.nn.ModuleList(
            BottleneckStreamLayer(out_dim, heads, linear_units, dropout_rate) for _ in range(num_layers))
        self.audio_layers = torch.nn.ModuleList(
            BottleneckStreamLayer(out_dim, heads, linear_units, dropout_rate) for _ in range(num_layers))
        self.norm_vision = LayerNorm(out_dim)
        self.norm_audio = LayerNorm(out_dim)
        self.out = torch.nn.Linear(2 * out_dim, out_dim)

    @classmethod
    def from_config(cls, config, options, vision_dim: int, audio_dim: int) -> "BottleneckFusion":
        return cls(vision_dim, audio_dim, config.adim, heads=config.aheads, dropout_rate=config.dropout_rate,
                   **options)

    def _split(self, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """``(B, T + N, D)`` -> frames ``(B, T, D)``, bottleneck tokens ``(B, N, D)``."""
        return x[:, : -self.num_tokens], x[:, -self.num_tokens:]

    def fuse(self, v: torch.Tensor, a: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        b = v.size(0)
        v, a = self.proj_vision(v), self.proj_audio(a)
        z = self.bottleneck.unsqueeze(0).expand(b, -1, -1)
        tokens_valid = torch.ones(b, self.num_tokens, dtype=torch.bool, device=mask.device)
        key_mask = torch.cat([mask, tokens_valid], dim=1).unsqueeze(1)  # (B, 1, T + N)
        for vision_layer, audio_layer in zip(self.vision_layers, self.audio_layers):
            v, z_v = self._split(vision_layer(torch.cat([v, z], dim=1), key_mask))
            a, z_a = self._split(audio_layer(torch.cat([a, z], dim=1), key_mask))
            z = 0.5 * (z_v + z_a)
        return self.out(torch.cat([self.norm_vision(v), self.norm_audio(a)], dim=-1))
