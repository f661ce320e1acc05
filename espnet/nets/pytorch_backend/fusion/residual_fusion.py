"""One stream passes through; the other is added through a gate that starts closed."""

from typing import Tuple

import torch

from espnet.nets.pytorch_backend.component_options import Option
from espnet.nets.pytorch_backend.fusion.base_fusion import BaseFusion
from espnet.nets.pytorch_backend.projection.auto_projection import AutoProjection


class ResidualFusion(BaseFusion):
    """``P_k k + tanh(alpha) * W_o o`` per frame: the kept stream ``k`` (``keep``, default
    the audio) passes through (``P_k`` is the identity when its size is the model size, else
    a linear map), the other stream ``o`` is projected and added through a per-channel gate
    ``tanh(alpha)`` with ``alpha = 0`` at the start (as Flamingo's gated cross-attention).

    The model therefore starts as the single-stream model of the kept stream: with a
    pretrained audio pair (``--audio-encoder whisper --decoder whisper-decoder --elayers 0``)
    an audio-visual model starts out transcribing exactly as the pretrained Whisper, and the
    lips come in as training opens the gate.
    """

    options = (
        Option("keep", "audio", "Stream that passes through the residual fusion (the other is added through a "
               "gate that starts closed).", choices=("audio", "vision"), flag="--residual-keep"),
    )

    def __init__(self, vision_dim: int, audio_dim: int, out_dim: int, keep: str = "audio") -> None:
        super().__init__(vision_dim, audio_dim, out_dim)
        if keep not in ("audio", "vision"):
            raise ValueError(f"--residual-keep must be audio or vision, got {keep!r}")
        self.keep = keep
        kept_dim, other_dim = (audio_dim, vision_dim) if keep == "audio" else (vision_dim, audio_dim)
        self.proj_kept = AutoProjection(kept_dim, out_dim)
        self.proj_other = torch.nn.Linear(other_dim, out_dim)
        self.alpha = torch.nn.Parameter(torch.zeros(out_dim))

    def output_rate(self, vision_rate: float, audio_rate: float) -> float:
        """The kept stream's rate: its frames pass through unchanged (a 50 Hz Whisper encoder
        output stays 50 Hz; the video is interpolated to it)."""
        return audio_rate if self.keep == "audio" else vision_rate

    def _streams(self, v: torch.Tensor, a: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        return (a, v) if self.keep == "audio" else (v, a)

    def fuse(self, v: torch.Tensor, a: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        kept, other = self._streams(v, a)
        return self.proj_kept(kept) + torch.tanh(self.alpha) * self.proj_other(other)
