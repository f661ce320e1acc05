"""Constant per-token bonus (``--penalty`` in ESPnet recipes)."""

from typing import Tuple

import torch

from espnet.nets.scorer_interface import BatchScorerInterface


class LengthBonus(BatchScorerInterface):
    """Adds 1 for every emitted token (scaled by its beam-search weight). Its state is
    only the dtype of the encoder output."""

    def __init__(self, n_vocab: int) -> None:
        self.n = n_vocab

    def batch_init_state(self, memory: torch.Tensor, memory_lengths: torch.Tensor) -> torch.dtype:
        return memory.dtype

    def batch_score(self, ys: torch.Tensor, state: torch.dtype) -> Tuple[torch.Tensor, torch.dtype]:
        return torch.ones(ys.size(0), ys.size(1), self.n, dtype=state, device=ys.device), state

    def select_state(self, state: torch.dtype, utts: torch.Tensor, prev_ids: torch.Tensor,
                     token_ids: torch.Tensor) -> torch.dtype:
        return state
