"""Projection from a frontend's feature size to the encoder size."""

import math

import torch


class AutoProjection(torch.nn.Module):
    """Identity when ``in_dim == out_dim``; otherwise a linear map (``mode="linear"``) or a
    2-layer MLP with SiLU (``mode="mlp"``).

    In linear mode the parameters are ``weight``/``bias`` directly on this module, so a
    model that stores it as ``proj_encoder`` has the Auto-AVSR keys
    ``proj_encoder.weight``/``proj_encoder.bias``.

    Shapes:
        ``(B, T, in_dim) -> (B, T, out_dim)``.
    """

    def __init__(self, in_dim: int, out_dim: int, mode: str = "linear") -> None:
        super().__init__()
        if mode not in ("linear", "mlp"):
            raise ValueError(f"projection mode must be 'linear' or 'mlp', got {mode!r}")
        self.in_dim, self.out_dim = in_dim, out_dim
        self.mode = "identity" if in_dim == out_dim else mode
        if self.mode == "linear":
            self.weight = torch.nn.Parameter(torch.empty(out_dim, in_dim))
            self.bias = torch.nn.Parameter(torch.empty(out_dim))
            torch.nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
            bound = 1.0 / math.sqrt(in_dim)
            torch.nn.init.uniform_(self.bias, -bound, bound)
        elif self.mode == "mlp":
            self.fc1 = torch.nn.Linear(in_dim, out_dim)
            self.fc2 = torch.nn.Linear(out_dim, out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.mode == "identity":
            return x
        if self.mode == "linear":
            return torch.nn.functional.linear(x, self.weight, self.bias)
        return self.fc2(torch.nn.functional.silu(self.fc1(x)))
