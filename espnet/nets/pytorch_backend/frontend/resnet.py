"""Legacy Auto-AVSR visual frontend: 3-D convolution stem + 2-D ResNet-18 trunk."""

from typing import Tuple

import torch

from espnet.nets.pytorch_backend.component_options import Option
from espnet.nets.pytorch_backend.frontend.base_frontend import BaseFrontend
from espnet.nets.pytorch_backend.frontend.resnet_blocks import RESNET_WIDTH, ResNetLayers

# Narrower ResNets train in the default layout: with fewer channels, PyTorch's channels-last
# backward of the 1x1 stride-2 shortcut convolution (4 -> 8 and 8 -> 16 channels) corrupts the
# heap on two or more threads (torch 2.14 CPU; 16 -> 32 and wider ran clean on 2, 4 and 8).
MIN_CHANNELS_LAST_WIDTH = 16

RESNET_DOWNSAMPLE = Option(
    "downsample", 1, "Average-pool each frame by this factor before the video ResNet "
    "(2: 88x88 crops enter as 44x44, about 1/4 of its multiply-adds; 1 = Auto-AVSR).", minimum=1,
    flag="--resnet-downsample")


class VideoTrunk(ResNetLayers):
    """2-D ResNet-18 layers followed by global average pooling: ``(N, w, H, W) -> (N, 8w)``."""

    def __init__(self, width: int = 64) -> None:
        super().__init__(dims=2, width=width)
        self.avgpool = torch.nn.AdaptiveAvgPool2d(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.avgpool(self.run_layers(x)).flatten(1)


class VideoResNet(BaseFrontend):
    """Mouth-crop frames to one ``8 * width``-d vector per frame (512-d, 25 Hz, for the
    legacy width 64).

    The stem is Conv3d(1→width, kernel 5×7×7, stride 1×2×2) + BatchNorm3d + swish +
    MaxPool3d(1×3×3, stride 1×2×2); it keeps the time axis, so lengths are unchanged.

    Args:
        width: Channels of the stem and first ResNet stage (64 in Auto-AVSR; smaller
            widths make CPU experiments fast).
        downsample: Each frame is average-pooled ``downsample × downsample`` (stride the
            same, edge rows/columns that do not fill a window dropped) before the stem;
            1 (Auto-AVSR) leaves the frames as they are. The ResNet ends in global
            pooling, so any frame size gives the same output size.

    Shapes:
        ``x`` ``(B, T, 1, H, W)`` (88×88 grayscale, normalised), ``lengths`` ``(B,)``
        frames -> ``(B, T, 8 * width)``, ``lengths``.
    """

    options = (RESNET_WIDTH, RESNET_DOWNSAMPLE)
    frame_rate = 25.0

    def __init__(self, width: int = 64, downsample: int = 1) -> None:
        super().__init__()
        if downsample < 1:
            raise ValueError(f"--resnet-downsample must be at least 1, got {downsample}")
        self.output_dim = 8 * width
        self.width = width
        self.downsample = downsample
        self.frontend3D = torch.nn.Sequential(
            torch.nn.Conv3d(1, width, (5, 7, 7), stride=(1, 2, 2), padding=(2, 3, 3), bias=False),
            torch.nn.BatchNorm3d(width),
            torch.nn.SiLU(),
            torch.nn.MaxPool3d((1, 3, 3), stride=(1, 2, 2), padding=(0, 1, 1)),
        )
        self.trunk = VideoTrunk(width)
        # train channels-last (below); False = the legacy layout in training too
        self.channels_last_training = True

    def forward(
        self, x: torch.Tensor, lengths: torch.Tensor
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        if x.dim() != 5:
            raise ValueError(f"video frontend expects (B, T, 1, H, W), got {tuple(x.shape)}")
        b = x.size(0)
        x = x.transpose(1, 2)  # (B, 1, T, H, W)
        if self.downsample > 1:
            if min(x.shape[-2:]) < self.downsample:
                raise ValueError(f"--resnet-downsample {self.downsample} is larger than the frames "
                                 f"({x.size(-2)}x{x.size(-1)})")
            k = (1, self.downsample, self.downsample)
            x = torch.nn.functional.avg_pool3d(x, k, stride=k)  # (B, 1, T, H / d, W / d)
        fast_layout = self.training and self.channels_last_training and self.width >= MIN_CHANNELS_LAST_WIDTH
        if fast_layout:
            # channels-last layouts: the same convolutions and pooling, 10-40 % faster on CPU in
            # training (benchmarks/train_speed.py); decoding keeps the legacy layout (and numerics).
            # A one-channel input is channels-last already, so the convolution returns its usual
            # layout: convert its output, else batch norm, swish and the pooling run on it (the
            # pooling 5x slower) and the 2-D trunk needs two more copies of it.
            conv, *rest = self.frontend3D
            x = conv(x.contiguous(memory_format=torch.channels_last_3d))
            x = x.contiguous(memory_format=torch.channels_last_3d)
            for layer in rest:
                x = layer(x)
        else:
            x = self.frontend3D(x)  # (B, 64, T, H', W')
        t = x.size(2)
        x = x.transpose(1, 2).reshape(b * t, x.size(1), x.size(3), x.size(4))
        if fast_layout:
            x = x.contiguous(memory_format=torch.channels_last)
        return self.trunk(x).reshape(b, t, -1), lengths
