"""Contract shared by every decoder."""

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence, Tuple

import torch

from espnet.nets.pytorch_backend.component_options import Option


@dataclass
class DecodeOptions:
    """How to decode (every decoder reads what applies to it).

    Attributes:
        beam_size: Hypotheses kept per step (1 = greedy).
        ctc_weight: Weight of the CTC prefix score in joint CTC/attention decoding (the
            decoder gets ``1 - ctc_weight``); only for decoders with ``joint_ctc_decoding``.
        max_new_tokens: Most tokens a ``generate``-based decoder produces per utterance (joint
            decoding ends at the encoder length).
        penalty: Length bonus per token (joint decoding).
    """

    beam_size: int = 40
    ctc_weight: float = 0.1
    max_new_tokens: int = 64
    penalty: float = 0.0

    def __post_init__(self) -> None:
        if self.beam_size < 1:
            raise ValueError(f"--beam-size must be >= 1, got {self.beam_size}")
        if not 0.0 <= self.ctc_weight <= 1.0:
            raise ValueError(f"--ctc-weight must be in [0, 1], got {self.ctc_weight}")
        if self.max_new_tokens < 1:
            raise ValueError(f"--max-new-tokens must be >= 1, got {self.max_new_tokens}")


@dataclass
class Decoded:
    """The best hypothesis of one utterance: token ids of the decoder's vocabulary (no
    start/end tokens) and its score (``None`` when the decoder reports none)."""

    token_ids: List[int]
    score: Optional[float] = None


class BaseDecoder(torch.nn.Module, ABC):
    """A decoder owns its vocabulary and turns encoder memory into text.

    Training: ``forward_train(memory (B, T, D), memory_lengths (B,), targets (B, L), texts)
    -> {"loss_att": scalar, "acc": float, ...}``. Every decoder gets both forms of the
    reference: ``targets``, the SentencePiece ids of the label list padded with -1, and
    ``texts``, the transcripts; it uses the one its vocabulary needs (the Transformer
    decoder the ids, a pretrained decoder with its own tokenizer the texts).

    CTC: the CTC head of the model predicts this decoder's vocabulary (``ctc_vocab_size``
    classes, blank included) with the targets ``ctc_targets(targets, texts)``;
    ``joint_ctc_decoding`` says whether decoding uses it too.

    Decoding, the one interface of every decoder: ``decode(memory (B, T, D), memory_lengths
    (B,), ctc, options) -> [Decoded]`` (the Transformer decoder runs joint CTC/attention
    beam search behind it, a pretrained decoder its ``generate``), and ``ids_to_text`` turns
    the ids into text. The tokenizer needs are declared here too: ``check_tokenizer`` says
    whether the SentencePiece tokenizer (``TextTransform`` or ``None``) is enough.

    ``options`` (class attribute): the decoder's own options (see ``component_options.py``).
    """

    options: Tuple[Option, ...] = ()
    joint_ctc_decoding: bool = False

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

    @abstractmethod
    def decode(self, memory: torch.Tensor, memory_lengths: torch.Tensor, ctc: Optional[torch.nn.Module],
               options: DecodeOptions) -> List[Decoded]:
        """Best hypothesis per utterance of a padded batch of encoder outputs."""
        raise NotImplementedError

    @abstractmethod
    def ids_to_text(self, token_ids: Sequence[int], sentencepiece) -> str:
        """Text of decoded ids (``sentencepiece``: the model's SentencePiece tokenizer or ``None``)."""
        raise NotImplementedError

    def check_tokenizer(self, sentencepiece) -> None:
        """Raise when decoding needs a SentencePiece tokenizer that is not given."""
