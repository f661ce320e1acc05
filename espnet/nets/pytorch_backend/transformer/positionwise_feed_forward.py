"""Position-wise feed-forward block."""

import torch

from espnet.nets.pytorch_backend.dropout import Dropout


class PositionwiseFeedForward(torch.nn.Module):
    """``w_2(dropout(relu(w_1(x))))`` applied independently at every frame.

    Args:
        idim: Input/output size D.
        hidden_units: Inner size.
        dropout_rate: Dropout after the activation.

    Shapes:
        ``(B, T, D) -> (B, T, D)``
    """

    def __init__(self, idim: int, hidden_units: int, dropout_rate: float) -> None:
        super().__init__()
        self.w_1 = torch.nn.Linear(idim, hidden_units)
        self.w_2 = torch.nn.Linear(hidden_units, idim)
        self.dropout = Dropout(dropout_rate)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.w_2(self.dropout(torch.relu(self.w_1(x))))
