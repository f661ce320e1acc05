"""Label-smoothed cross entropy (KL form, as in ESPnet)."""

import torch


class LabelSmoothingLoss(torch.nn.Module):
    """KL divergence to a smoothed one-hot target, summed and divided by the batch size
    (or by the number of valid tokens when ``normalize_length``).

    Args:
        size: Vocabulary size V.
        padding_idx: Target id to ignore.
        smoothing: Probability mass spread over the other V-1 classes.
        normalize_length: Divide by the number of tokens instead of the batch size.

    Shapes:
        ``x`` ``(B, L, V)`` logits, ``target`` ``(B, L)``.
    """

    def __init__(
        self, size: int, padding_idx: int, smoothing: float, normalize_length: bool = False
    ) -> None:
        super().__init__()
        self.size = size
        self.padding_idx = padding_idx
        self.smoothing = smoothing
        self.confidence = 1.0 - smoothing
        self.normalize_length = normalize_length

    def forward(self, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if x.size(-1) != self.size:
            raise ValueError(f"logits have {x.size(-1)} classes, expected {self.size}")
        batch_size = x.size(0)
        logits = x.reshape(-1, self.size)
        target = target.reshape(-1)
        ignore = target == self.padding_idx
        n_valid = int(target.numel() - ignore.sum().item())
        with torch.no_grad():
            true_dist = torch.full_like(logits, self.smoothing / (self.size - 1))
            true_dist.scatter_(1, target.masked_fill(ignore, 0).unsqueeze(1), self.confidence)
        logp = torch.log_softmax(logits, dim=1)
        kl = torch.nn.functional.kl_div(logp, true_dist, reduction="none")
        denom = n_valid if self.normalize_length else batch_size
        return kl.masked_fill(ignore.unsqueeze(1), 0.0).sum() / denom
