"""An example encoder in one file (used by ``tutorials/new_encoder.py``).

A bidirectional GRU on the projected frontend features. Everything an encoder needs is
here: subclass ``BaseEncoder``, declare its ``options`` (here one, ``num_layers``, which
becomes the flag ``--bigru-layers``), set ``output_dim`` (the model width ``adim``: the CTC
head and the decoder read it), and implement ``forward(xs, lengths) -> (xs', lengths)``. The
default ``from_config`` calls the constructor with ``config.adim`` and the options.
"""

from typing import Tuple

import torch

from espnet.nets.pytorch_backend.component_options import Option
from espnet.nets.pytorch_backend.encoder.base_encoder import BaseEncoder
from espnet.nets.pytorch_backend.transformer.layer_norm import LayerNorm


class BiGRUEncoder(BaseEncoder):
    """``LayerNorm(x + BiGRU(x))``: ``num_layers`` bidirectional GRU layers of ``adim / 2``
    units per direction. Packed sequences: padded frames are never read, so a batch's padding
    does not change an utterance's output (the default ``forward_padding_invariant`` holds).

    Args:
        attention_dim: Model width D (``adim``, even).
        num_layers: GRU layers.

    Shapes:
        ``xs`` ``(B, T, D)``, ``lengths`` ``(B,)`` frames -> ``(B, T, D)``, ``lengths``.
    """

    options = (Option("num_layers", 1, "GRU layers of the bigru encoder.", minimum=1, flag="--bigru-layers"),)

    def __init__(self, attention_dim: int, num_layers: int = 1) -> None:
        super().__init__()
        if attention_dim % 2:
            raise ValueError(f"--encoder bigru needs an even --adim (two directions of adim/2), got {attention_dim}")
        self.gru = torch.nn.GRU(attention_dim, attention_dim // 2, num_layers=num_layers, batch_first=True,
                                bidirectional=True)
        self.norm = LayerNorm(attention_dim)
        self.output_dim = attention_dim

    def forward(self, xs: torch.Tensor, lengths: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        packed = torch.nn.utils.rnn.pack_padded_sequence(xs, lengths.cpu(), batch_first=True, enforce_sorted=False)
        out, _ = self.gru(packed)
        out, _ = torch.nn.utils.rnn.pad_packed_sequence(out, batch_first=True, total_length=xs.size(1))
        return self.norm(xs + out), lengths
