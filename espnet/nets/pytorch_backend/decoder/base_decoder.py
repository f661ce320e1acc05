"""Contract shared by every decoder."""

from abc import ABC, abstractmethod
from typing import Dict

import torch


class BaseDecoder(torch.nn.Module, ABC):
    """A decoder owns its vocabulary and turns encoder memory into text.

    Training: ``forward_train(memory (B, T, D), memory_lengths (B,), targets (B, L)) ->
    {"loss_att": scalar, "acc": float, ...}`` where ``targets`` are the decoder's own token
    ids padded with ``ignore_id``.

    ``uses_text = True`` marks a decoder with its own tokenizer (a pretrained HF model): it
    is trained on reference texts (``forward_train(..., texts=[...])``), exposes
    ``tokenize(texts) -> (ids, lengths)``, ``vocab_size`` and decodes with
    ``decode(memory, lengths, beam_size, max_new_tokens) -> texts``.
    """

    uses_text = False

    @classmethod
    @abstractmethod
    def from_config(cls, config) -> "BaseDecoder":
        """Build from a :class:`ModelConfig`."""
        raise NotImplementedError

    @abstractmethod
    def forward_train(
        self, memory: torch.Tensor, memory_lengths: torch.Tensor, targets: torch.Tensor
    ) -> Dict[str, torch.Tensor]:
        raise NotImplementedError
