"""Contract shared by every sequence encoder (the ``--encoder`` family)."""

from abc import ABC, abstractmethod
from typing import Any, Dict, Tuple

import torch

from espnet.nets.pytorch_backend.component_options import Option


class BaseEncoder(torch.nn.Module, ABC):
    """An encoder turns the projected (or fused) frontend features into the memory that the
    CTC head and the decoder read, at the same frame rate.

    Subclasses set ``options`` (class attribute, see ``component_options.py``), passed to
    :meth:`from_config`, and implement :meth:`forward`. Every encoder works at the model
    width ``adim`` (``config.adim``): input and output ``(B, T, adim)``, so ``output_dim``
    equals ``adim``. Attention encoders use ``config.aheads`` heads and
    ``config.dropout_rate``, sizes shared with the Transformer decoder and the fusions.

    ``forward(xs (B, T, adim), lengths (B,)) -> (B, T, adim), lengths (B,)``: lengths in
    frames, unchanged; frames past an utterance's length are padding.
    """

    options: Tuple[Option, ...] = ()
    output_dim: int

    @classmethod
    def from_config(cls, config, options: Dict[str, Any]) -> "BaseEncoder":
        """Build from the model config and this encoder's resolved ``options`` (by default
        the options are constructor keywords, after ``attention_dim=config.adim``)."""
        return cls(config.adim, **options)

    @abstractmethod
    def forward(self, xs: torch.Tensor, lengths: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def forward_padding_invariant(self, xs: torch.Tensor, lengths: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """:meth:`forward` such that each utterance's valid output frames equal those of its
        encoding alone (up to float rounding), for decoding a padded batch. The default is
        :meth:`forward`: right for encoders that mask padding everywhere; an encoder whose
        training-time numerics see padding (the Conformer's convolution) overrides it."""
        return self.forward(xs, lengths)
