"""Dropout with a cheaper random mask on the CPU."""

import torch

_INT64_MIN = -(2**63)
_LEVELS = 65536  # the mask compares 16-bit uniform numbers


class Dropout(torch.nn.Dropout):
    """``torch.nn.Dropout`` whose training mask on the CPU costs a fraction of PyTorch's.

    PyTorch's CPU dropout draws one Bernoulli sample per element; on this project's 2-core
    EPYC that was about 11 % of a quickstart-size Conformer's training step. Here each 64-bit
    number drawn from the same (seeded) CPU generator gives the 16-bit uniform numbers of four
    elements; an element is dropped when its number is among the lowest ``k = round(p * 65536)``
    of the 65536 values, so it is kept with probability ``1 - k / 65536`` (p = 0.1: 0.100006
    dropped), and kept elements are scaled by ``65536 / (65536 - k)``, which keeps the
    expectation exactly. Evaluation, ``p = 0``, ``p = 1``, ``inplace`` and other devices use
    ``torch.nn.Dropout`` as it is.

    Shapes: any ``x`` -> the same shape and dtype.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or x.device.type != "cpu" or self.inplace or not 0.0 < self.p < 1.0:
            return super().forward(x)
        dropped = round(self.p * _LEVELS)
        if dropped in (0, _LEVELS):
            return super().forward(x)
        n = x.numel()
        numbers = torch.empty((n + 3) // 4, dtype=torch.int64).random_(_INT64_MIN, None)
        numbers = numbers.view(torch.int16)[:n].view(x.shape)  # uniform in [-32768, 32767]
        keep = numbers >= dropped - _LEVELS // 2
        # the scale multiplies x as a Python number (computed in float32 for bf16/fp16 x, then
        # rounded once), not as a tensor of x's dtype, whose rounding would bias every element
        return x * (_LEVELS / (_LEVELS - dropped)) * keep
