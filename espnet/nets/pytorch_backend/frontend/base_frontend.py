"""Contract shared by every vision and audio frontend."""

from abc import ABC, abstractmethod
from typing import Tuple

import torch


class BaseFrontend(torch.nn.Module, ABC):
    """A frontend turns raw input into a feature sequence and returns its true lengths.

    Subclasses set:
        output_dim: Feature size D of the output.
        frame_rate: Output frames per second (Hz).
        utterance_norm_input: Audio frontends only: ``True`` when the frontend expects
            the waveform layer-normed over the whole utterance by the dataset (Auto-AVSR's
            normalisation, kept in the data pipeline so that legacy numerics are exact);
            ``False`` (default) gives the waveform at its recorded level, for frontends
            that apply their own preprocessing (Whisper's log-mel, WavLM's normalisation).

    ``forward(x, lengths) -> (feats (B, T', D), lengths' (B,))``; the lengths are in
    output frames and never guessed from padding.
    """

    output_dim: int
    frame_rate: float
    utterance_norm_input: bool = False

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
