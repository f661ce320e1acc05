"""Concatenate both streams per frame, then an MLP."""

import torch

from espnet.nets.pytorch_backend.fusion.base_fusion import BaseFusion


class ConcatFusion(BaseFusion):
    """``MLP([v; a])``: Linear(Dv+Da → D) → LayerNorm → SiLU → Linear(D → D), per frame."""

    def __init__(self, vision_dim: int, audio_dim: int, out_dim: int) -> None:
        super().__init__(vision_dim, audio_dim, out_dim)
        self.mlp = torch.nn.Sequential(
            torch.nn.Linear(vision_dim + audio_dim, out_dim),
            torch.nn.LayerNorm(out_dim),
            torch.nn.SiLU(),
            torch.nn.Linear(out_dim, out_dim),
        )

    def fuse(self, v: torch.Tensor, a: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.mlp(torch.cat([v, a], dim=-1))
