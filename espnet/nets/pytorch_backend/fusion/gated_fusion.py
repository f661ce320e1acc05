"""Learned per-frame gate mixing the projected streams."""

import torch

from espnet.nets.pytorch_backend.fusion.base_fusion import BaseFusion


class GatedFusion(BaseFusion):
    """``g * W_v v + (1 - g) * W_a a`` with ``g = sigmoid(W_g [W_v v; W_a a])`` per frame and
    channel, so the model can lean on lips when the audio is noisy and vice versa."""

    def __init__(self, vision_dim: int, audio_dim: int, out_dim: int) -> None:
        super().__init__(vision_dim, audio_dim, out_dim)
        self.proj_vision = torch.nn.Linear(vision_dim, out_dim)
        self.proj_audio = torch.nn.Linear(audio_dim, out_dim)
        self.gate = torch.nn.Linear(2 * out_dim, out_dim)

    def fuse(self, v: torch.Tensor, a: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        pv, pa = self.proj_vision(v), self.proj_audio(a)
        g = torch.sigmoid(self.gate(torch.cat([pv, pa], dim=-1)))
        return g * pv + (1.0 - g) * pa
