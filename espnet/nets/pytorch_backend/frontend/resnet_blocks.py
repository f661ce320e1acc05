"""ResNet-18 building blocks with swish activations, in 1-D (audio) or 2-D (video)."""

from typing import Optional

import torch

from espnet.nets.pytorch_backend.component_options import Option

# One flag for both ResNet frontends (an audio-visual model with both gets the same width).
RESNET_WIDTH = Option("width", 64, "Base channels of the ResNet frontends (64 = Auto-AVSR; smaller is faster).",
                      minimum=1, flag="--resnet-width")

_CONV = {1: torch.nn.Conv1d, 2: torch.nn.Conv2d}
_NORM = {1: torch.nn.BatchNorm1d, 2: torch.nn.BatchNorm2d}


class BasicBlock(torch.nn.Module):
    """Two 3-tap convolutions with BatchNorm and swish, plus a (projected) shortcut.

    Args:
        inplanes: Input channels.
        planes: Output channels.
        stride: Stride of the first convolution.
        downsample: Shortcut projection when shape changes.
        dims: 1 for ``(B, C, T)`` input, 2 for ``(B, C, H, W)``.
    """

    def __init__(
        self,
        inplanes: int,
        planes: int,
        stride: int = 1,
        downsample: Optional[torch.nn.Module] = None,
        dims: int = 2,
    ) -> None:
        super().__init__()
        conv, norm = _CONV[dims], _NORM[dims]
        self.conv1 = conv(inplanes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = norm(planes)
        self.relu1 = torch.nn.SiLU()
        self.conv2 = conv(planes, planes, 3, stride=1, padding=1, bias=False)
        self.bn2 = norm(planes)
        self.relu2 = torch.nn.SiLU()
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu1(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        shortcut = x if self.downsample is None else self.downsample(x)
        return self.relu2(out + shortcut)


class ResNetLayers(torch.nn.Module):
    """``layer1`` .. ``layer4`` of ResNet-18 (``width`` × 1, 2, 4, 8 channels, i.e. 64 ..
    512 for the legacy width 64; 2 blocks each; stride 2 from ``layer2`` on)."""

    def __init__(self, dims: int, width: int = 64, layers=(2, 2, 2, 2)) -> None:
        super().__init__()
        self.dims = dims
        self._inplanes = width
        self.layer1 = self._make_layer(width, layers[0], 1)
        self.layer2 = self._make_layer(2 * width, layers[1], 2)
        self.layer3 = self._make_layer(4 * width, layers[2], 2)
        self.layer4 = self._make_layer(8 * width, layers[3], 2)

    def _make_layer(self, planes: int, blocks: int, stride: int) -> torch.nn.Sequential:
        downsample = None
        if stride != 1 or self._inplanes != planes:
            downsample = torch.nn.Sequential(
                _CONV[self.dims](self._inplanes, planes, 1, stride=stride, bias=False),
                _NORM[self.dims](planes),
            )
        blocks_list = [BasicBlock(self._inplanes, planes, stride, downsample, self.dims)]
        self._inplanes = planes
        blocks_list += [BasicBlock(planes, planes, dims=self.dims) for _ in range(1, blocks)]
        return torch.nn.Sequential(*blocks_list)

    def run_layers(self, x: torch.Tensor) -> torch.Tensor:
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))
