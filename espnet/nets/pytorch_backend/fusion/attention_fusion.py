"""Cross-modal attention: each stream attends to the other (padding masked)."""

import torch

from espnet.nets.pytorch_backend.fusion.base_fusion import BaseFusion
from espnet.nets.pytorch_backend.transformer.attention import MultiHeadedAttention
from espnet.nets.pytorch_backend.transformer.layer_norm import LayerNorm


class AttentionFusion(BaseFusion):
    """``v' = v + Attn(v -> a)``, ``a' = a + Attn(a -> v)`` on projected, normalised streams,
    then ``Linear([v'; a'])``. Keys at padded frames are masked, so extra padding in a batch
    cannot change any item.

    Args:
        heads: Attention heads (must divide ``out_dim``).
    """

    def __init__(self, vision_dim: int, audio_dim: int, out_dim: int, heads: int = 4, dropout_rate: float = 0.0) -> None:
        super().__init__(vision_dim, audio_dim, out_dim)
        if out_dim % heads != 0:
            heads = 1
        self.proj_vision = torch.nn.Linear(vision_dim, out_dim)
        self.proj_audio = torch.nn.Linear(audio_dim, out_dim)
        self.norm_vision = LayerNorm(out_dim)
        self.norm_audio = LayerNorm(out_dim)
        self.vision_to_audio = MultiHeadedAttention(heads, out_dim, dropout_rate)
        self.audio_to_vision = MultiHeadedAttention(heads, out_dim, dropout_rate)
        self.out = torch.nn.Linear(2 * out_dim, out_dim)

    @classmethod
    def from_config(cls, config, options, vision_dim: int, audio_dim: int) -> "AttentionFusion":
        return cls(vision_dim, audio_dim, config.adim, heads=config.aheads, **options)

    def fuse(self, v: torch.Tensor, a: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        pv, pa = self.proj_vision(v), self.proj_audio(a)
        key_mask = mask.unsqueeze(1)  # (B, 1, T)
        nv, na = self.norm_vision(pv), self.norm_audio(pa)
        v2 = pv + self.vision_to_audio(nv, na, na, key_mask)
        a2 = pa + self.audio_to_vision(na, nv, nv, key_mask)
        return self.out(torch.cat([v2, a2], dim=-1))
