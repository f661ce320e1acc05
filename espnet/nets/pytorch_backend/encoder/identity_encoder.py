"""``--encoder none``: no encoder layers."""

from typing import Any, Dict, Tuple

import torch

from espnet.nets.pytorch_backend.encoder.base_encoder import BaseEncoder


class IdentityEncoder(BaseEncoder):
    """The projected (or fused) frontend features are the encoder output, unchanged: a
    pretrained encoder (e.g. Whisper's) feeds its own decoder, or CTC/decoder sit straight
    on the frontend. No parameters, so no ``encoder.*`` keys in a state dict (as the
    ``--elayers 0`` models before the ``--encoder`` flag).

    Shapes:
        ``(B, T, D), (B,) -> (B, T, D), (B,)`` (the same tensors).
    """

    def __init__(self, attention_dim: int) -> None:
        super().__init__()
        self.output_dim = attention_dim

    @classmethod
    def from_config(cls, config, options: Dict[str, Any]) -> "IdentityEncoder":
        return cls(config.adim)

    def forward(self, xs: torch.Tensor, lengths: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        return xs, lengths
