"""Contract shared by every decoder."""

from abc import ABC, abstractmethod
from typing import Any, Dict, List, Optional, Tuple

import torch

from espnet.nets.pytorch_backend.component_options import Option


class BaseDecoder(torch.nn.Module, ABC):
    """A decoder owns its vocabulary and turns encoder memory into text.

    Training: ``forward_train(memory (B, T, D), memory_lengths (B,), targets (B, L), texts)
    -> {"loss_att": scalar, "acc": float, ...}``. Every decoder gets both forms of the
    reference: ``targets``, the SentencePiece ids of the label list padded with -1, and
    ``texts``, the transcripts; it uses the one its vocabulary needs (the Transformer
    decoder the ids, a pretrained decoder with its own tokenizer the texts).

    CTC: the CTC head of the model predicts this decoder's vocabulary (``ctc_vocab_size``
    classes, blank included) with the targets ``ctc_targets(targets, texts)``.

    ``options`` (class attribute): the decoder's own options (see ``component_options.py``).
    """

    options: Tuple[Option, ...] = ()

    @classmethod
    @abstractmethod
    def from_config(cls, config, options: Dict[str, Any]) -> "BaseDecoder":
        """Build from a :class:`ModelConfig` and this decoder's resolved ``options``."""
        raise NotImplementedError

    @abstractmethod
    def forward_train(self, memory: torch.Tensor, memory_lengths: torch.Tensor, targets: torch.Tensor,
                      texts: Optional[List[Optional[str]]] = None) -> Dict[str, Any]:
        raise NotImplementedError

    @property
    @abstractmethod
    def ctc_vocab_size(self) -> int:
        """Classes of the CTC head (blank = 0 included)."""
        raise NotImplementedError

    @abstractmethod
    def ctc_targets(self, targets: torch.Tensor, texts: Optional[List[Optional[str]]]) -> torch.Tensor:
        """CTC label ids ``(B, L)`` padded with -1, in ``[1, ctc_vocab_size)``."""
        raise NotImplementedError
