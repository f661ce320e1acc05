"""Contract shared by every vision and audio frontend."""

from abc import ABC, abstractmethod
from typing import Tuple

import torch


class BaseFrontend(torch.nn.Module, ABC):
    """A frontend turns raw input into a feature sequence and returns its true lengths.

    Subclasses set:
        output_dim: Feature size D of the output.
        frame_rate: Output frames per second (Hz).

    ``forward(x, lengths) -> (feats (B, T', D), lengths' (B,))``; the lengths are in
    output frames and never guessed from padding.
    """

    output_dim: int
    frame_rate: float

    @classmethod
    @abstractmethod
    def from_config(cls, config) -> "BaseFrontend":
        """Build from a :class:`ModelConfig` (sizes, model names, freezing)."""
        raise NotImplementedError

    @abstractmethod
    def forward(
        self, x: torch.Tensor, lengths: torch.Tensor
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError
