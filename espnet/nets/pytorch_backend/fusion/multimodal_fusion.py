"""Audio-visual fusion: align frame rates and lengths, then a registered fusion layer."""

from typing import Optional, Tuple

import torch

from espnet.nets.pytorch_backend.fusion.base_fusion import BaseFusion
from espnet.nets.pytorch_backend.fusion.temporal_alignment import resample_stream
from espnet.nets.pytorch_backend.nets_utils import make_non_pad_mask


class MultimodalFusion(torch.nn.Module):
    """Brings both streams to one rate (the fusion layer's choice: the slower one by default),
    makes their lengths agree per item (the shorter one; the longer stream's tail is dropped),
    and fuses.

    Args:
        layer: The fusion layer (a registered ``BaseFusion``).
        target_rate: Output frame rate in Hz; ``None`` = the layer's ``output_rate``.

    Shapes:
        ``forward((v (B, Tv, Dv), v_lengths, v_rate), (a (B, Ta, Da), a_lengths, a_rate))
        -> (B, T, D), lengths (B,)`` at the output rate.
    """

    def __init__(self, layer: BaseFusion, target_rate: Optional[float] = None) -> None:
        super().__init__()
        self.layer = layer
        self.target_rate = target_rate

    def output_rate(self, v_rate: float, a_rate: float) -> float:
        return self.target_rate if self.target_rate is not None else self.layer.output_rate(v_rate, a_rate)

    def forward(
        self,
        vision: Tuple[torch.Tensor, torch.Tensor, float],
        audio: Tuple[torch.Tensor, torch.Tensor, float],
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        v, v_len, v_rate = vision
        a, a_len, a_rate = audio
        rate = self.output_rate(v_rate, a_rate)
        v, v_len = resample_stream(v, v_len, v_rate, rate)
        a, a_len = resample_stream(a, a_len, a_rate, rate)
        lengths = torch.minimum(v_len, a_len)
        t = int(lengths.max())
        v, a = self._fit(v, t), self._fit(a, t)
        mask = make_non_pad_mask(lengths, t).to(v.device)
        return self.layer(v, a, mask), lengths

    @staticmethod
    def _fit(x: torch.Tensor, t: int) -> torch.Tensor:
        if x.size(1) >= t:
            return x[:, :t]
        return torch.nn.functional.pad(x, (0, 0, 0, t - x.size(1)))
