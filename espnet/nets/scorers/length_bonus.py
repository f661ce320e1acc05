"""Constant per-token bonus (``--penalty`` in ESPnet recipes)."""

from typing import Any, Tuple

import torch

from espnet.nets.scorer_interface import BatchScorerInterface


class LengthBonus(BatchScorerInterface):
    """Adds 1 for every emitted token (scaled by its beam-search weight)."""

    def __init__(self, n_vocab: int) -> None:
        self.n = n_vocab

    def batch_score(self, ys: torch.Tensor, state: Any, xs: torch.Tensor) -> Tuple[torch.Tensor, Any]:
        return torch.ones(ys.size(0), self.n, dtype=xs.dtype, device=xs.device), None

    def select_state(self, state: Any, prev_ids: torch.Tensor, token_ids: torch.Tensor) -> Any:
        return None
