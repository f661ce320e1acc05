"""Contract of a fusion layer that mixes two aligned streams."""

from abc import ABC, abstractmethod
from typing import Any, Dict, Tuple

import torch

from espnet.nets.pytorch_backend.component_options import Option


class BaseFusion(torch.nn.Module, ABC):
    """Fuses two streams that already share one frame rate and one length per item.

    ``forward(v (B, T, Dv), a (B, T, Da), mask (B, T) bool, True = valid) -> (B, T, D)``;
    padded frames of the output are zero and no valid frame may depend on padding.

    Args:
        vision_dim, audio_dim: Input sizes.
        out_dim: Output size (the encoder size ``adim``).
    """

    options: Tuple[Option, ...] = ()

    def __init__(self, vision_dim: int, audio_dim: int, out_dim: int) -> None:
        super().__init__()
        self.vision_dim, self.audio_dim, self.out_dim = vision_dim, audio_dim, out_dim

    @classmethod
    def from_config(cls, config, options: Dict[str, Any], vision_dim: int, audio_dim: int) -> "BaseFusion":
        """Build for streams of ``vision_dim``/``audio_dim`` features and output ``config.adim``
        (by default the fusion's ``options`` are extra constructor keywords)."""
        return cls(vision_dim, audio_dim, config.adim, **options)

    def output_rate(self, vision_rate: float, audio_rate: float) -> float:
        """Frame rate (Hz) the two streams are brought to before fusing: the slower one."""
        return min(vision_rate, audio_rate)

    @abstractmethod
    def fuse(self, v: torch.Tensor, a: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, v: torch.Tensor, a: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.fuse(v, a, mask).masked_fill(~mask.unsqueeze(-1), 0.0)
