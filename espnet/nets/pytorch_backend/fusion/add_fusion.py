"""Project each stream to the model size and sum."""

import torch

from espnet.nets.pytorch_backend.fusion.base_fusion import BaseFusion


class AddFusion(BaseFusion):
    """``W_v v + W_a a`` per frame."""

    def __init__(self, vision_dim: int, audio_dim: int, out_dim: int) -> None:
        super().__init__(vision_dim, audio_dim, out_dim)
        self.proj_vision = torch.nn.Linear(vision_dim, out_dim)
        self.proj_audio = torch.nn.Linear(audio_dim, out_dim)

    def fuse(self, v: torch.Tensor, a: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.proj_vision(v) + self.proj_audio(a)
