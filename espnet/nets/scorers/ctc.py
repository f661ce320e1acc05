"""CTC prefix scorer for joint CTC/attention beam search."""

from typing import Any, Optional, Tuple

import torch

from espnet.nets.ctc_prefix_score import CTCPrefixScorer as _PrefixScore
from espnet.nets.scorer_interface import BatchPartialScorerInterface


class CTCPrefixScorer(BatchPartialScorerInterface):
    """Wraps a CTC module (anything with ``log_softmax((B, T, D)) -> (B, T, V)``).

    Args:
        ctc: The CTC head.
        eos: End-of-sentence id.
        blank: Blank id.
    """

    def __init__(self, ctc: torch.nn.Module, eos: int, blank: int = 0) -> None:
        self.ctc = ctc
        self.eos = eos
        self.blank = blank
        self.impl: Optional[_PrefixScore] = None

    def batch_init_state(self, x: torch.Tensor) -> Any:
        logp = self.ctc.log_softmax(x.unsqueeze(0)).squeeze(0)
        self.impl = _PrefixScore(logp, self.blank, self.eos)
        return None

    def batch_score_partial(
        self, ys: torch.Tensor, ids: Optional[torch.Tensor], state: Any, x: torch.Tensor
    ) -> Tuple[torch.Tensor, Any]:
        if self.impl is None:
            raise RuntimeError("batch_init_state must be called before scoring")
        return self.impl.score(ys, state, ids)

    def select_state(self, state: Any, prev_ids: torch.Tensor, token_ids: torch.Tensor) -> Any:
        return _PrefixScore.select(state, prev_ids, token_ids)
