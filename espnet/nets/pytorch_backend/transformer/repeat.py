"""A ModuleList whose layers each map a tuple of arguments to the next tuple."""

from typing import Callable

import torch


class MultiSequential(torch.nn.Sequential):
    """Sequential container for layers that take and return several tensors."""

    def forward(self, *args):  # type: ignore[override]
        for layer in self:
            args = layer(*args)
        return args


def repeat(num_blocks: int, build: Callable[[int], torch.nn.Module]) -> MultiSequential:
    """Build ``num_blocks`` layers with ``build(index)``."""
    return MultiSequential(*[build(i) for i in range(num_blocks)])
