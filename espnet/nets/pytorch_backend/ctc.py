"""CTC head and loss."""

from typing import Tuple

import torch

from espnet.nets.pytorch_backend.dropout import Dropout


class CTC(torch.nn.Module):
    """Linear projection to the vocabulary plus the CTC loss.

    The loss is summed over the batch and divided by the batch size (as in ESPnet).

    Args:
        odim: Vocabulary size V (blank = 0).
        eprojs: Encoder output size D.
        dropout_rate: Dropout before the projection (training only).
        ignore_id: Padding id in targets.
    """

    def __init__(self, odim: int, eprojs: int, dropout_rate: float = 0.1, ignore_id: int = -1) -> None:
        super().__init__()
        self.ctc_lo = torch.nn.Linear(eprojs, odim)
        self.dropout = Dropout(dropout_rate)
        self.ctc_loss = torch.nn.CTCLoss(reduction="sum", zero_infinity=True)
        self.ignore_id = ignore_id

    def forward(
        self, hs_pad: torch.Tensor, hlens: torch.Tensor, ys_pad: torch.Tensor
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """Loss for ``hs_pad`` ``(B, T, D)``, ``hlens`` ``(B,)``, ``ys_pad`` ``(B, L)``.

        Returns:
            Scalar loss and the logits ``(B, T, V)``.
        """
        logits = self.ctc_lo(self.dropout(hs_pad))
        ys = [y[y != self.ignore_id] for y in ys_pad]
        olens = torch.tensor([len(y) for y in ys], dtype=torch.long, device=logits.device)
        logp = logits.transpose(0, 1).log_softmax(2).float()  # (T, B, V)
        loss = self.ctc_loss(logp, torch.cat(ys).to(logits.device), hlens.long(), olens)
        return loss / logits.size(0), logits

    def log_softmax(self, hs_pad: torch.Tensor) -> torch.Tensor:
        """``(B, T, D) -> (B, T, V)`` log-posteriors."""
        return torch.log_softmax(self.ctc_lo(hs_pad), dim=-1)

    def argmax(self, hs_pad: torch.Tensor) -> torch.Tensor:
        """Greedy frame labels ``(B, T)``."""
        return torch.argmax(self.ctc_lo(hs_pad), dim=-1)
