"""Contract shared by every vision and audio frontend."""

from abc import ABC, abstractmethod
from typing import Any, Dict, Tuple

import torch

from espnet.nets.pytorch_backend.component_options import Option

# Vision frontends get 88x88 grayscale frames in [0, 1] normalised with Auto-AVSR's mean and
# standard deviation (the dataset's transform applies them; pretrained frontends undo them).
VIDEO_MEAN, VIDEO_STD = 0.421, 0.165


class BaseFrontend(torch.nn.Module, ABC):
    """A frontend turns raw input into a feature sequence and returns its true lengths.

    Subclasses set:
        options: The component's own options (class attribute, see
            ``component_options.py``), passed to ``from_config``.
        output_dim: Feature size D of the output (on the instance: it may depend on the
            options or on the loaded pretrained model).
        frame_rate: Output frames per second (Hz); a class attribute (read by the CLI
            and the tests without building the model), which an instance may refine.
        utterance_norm_input: Audio frontends only: ``True`` when the frontend expects
            the waveform layer-normed over the whole utterance by the dataset (Auto-AVSR's
            normalisation, kept in the data pipeline so that legacy numerics are exact);
            ``False`` (default) gives the waveform at its recorded level, for frontends
            that apply their own preprocessing (Whisper's log-mel, WavLM's normalisation).

    ``forward(x, lengths) -> (feats (B, T', D), lengths' (B,))``; the lengths are in
    output frames and never guessed from padding.
    """

    options: Tuple[Option, ...] = ()
    output_dim: int
    frame_rate: float
    utterance_norm_input: bool = False

    @classmethod
    def from_config(cls, config, options: Dict[str, Any]) -> "BaseFrontend":
        """Build from the model config and this component's resolved ``options`` (by
        default: the options are the constructor's keyword arguments)."""
        return cls(**options)

    @abstractmethod
    def forward(
        self, x: torch.Tensor, lengths: torch.Tensor
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError
