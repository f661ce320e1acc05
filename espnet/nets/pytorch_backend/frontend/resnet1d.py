"""Legacy Auto-AVSR audio frontend: 1-D ResNet-18 on the raw 16 kHz waveform."""

from typing import Tuple

import torch

from espnet.nets.pytorch_backend.frontend.base_frontend import BaseFrontend
from espnet.nets.pytorch_backend.frontend.resnet_blocks import RESNET_WIDTH, ResNetLayers

SAMPLES_PER_FRAME = 640  # 16 kHz / 25 Hz


class AudioTrunk(ResNetLayers):
    """Conv1d(1→width, kernel 80, stride 4) + BN + swish, ResNet-18 layers (×8 down),
    then average pooling over 20 steps: one frame per 640 samples."""

    def __init__(self, width: int = 64) -> None:
        super().__init__(dims=1, width=width)
        self.conv1 = torch.nn.Conv1d(1, width, kernel_size=80, stride=4, padding=38, bias=False)
        self.bn1 = torch.nn.BatchNorm1d(width)
        self.relu = torch.nn.SiLU()
        self.avgpool = torch.nn.AvgPool1d(kernel_size=20, stride=20)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.bn1(self.conv1(x)))
        return self.avgpool(self.run_layers(x))


class AudioResNet1D(BaseFrontend):
    """Raw waveform to one ``8 * width``-d vector per 640 samples (512-d, 25 Hz, for the
    legacy width 64).

    Shapes:
        ``x`` ``(B, S, 1)`` or ``(B, S)`` samples at 16 kHz, ``lengths`` ``(B,)`` in
        samples -> ``(B, S // 640, 8 * width)``, ``lengths // 640``.

    Input: each utterance layer-normed over its samples by the dataset (Auto-AVSR).
    """

    options = (RESNET_WIDTH,)
    frame_rate = 25.0
    utterance_norm_input = True

    def __init__(self, width: int = 64) -> None:
        super().__init__()
        self.output_dim = 8 * width
        self.trunk = AudioTrunk(width)

    def forward(
        self, x: torch.Tensor, lengths: torch.Tensor
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        if x.dim() == 2:
            x = x.unsqueeze(-1)
        if x.dim() != 3 or x.size(-1) != 1:
            raise ValueError(f"audio frontend expects (B, S, 1) waveforms, got {tuple(x.shape)}")
        n_frames = x.size(1) // SAMPLES_PER_FRAME
        x = x[:, : n_frames * SAMPLES_PER_FRAME].transpose(1, 2)  # (B, 1, S)
        feats = self.trunk(x).transpose(1, 2)  # (B, T, 512)
        return feats, torch.div(lengths, SAMPLES_PER_FRAME, rounding_mode="trunc")
