"""CTC prefix scorer for joint CTC/attention beam search."""

from typing import Optional, Tuple

import torch

from espnet.nets.ctc_prefix_score import CTCFullState, CTCState
from espnet.nets.ctc_prefix_score import CTCPrefixScorer as _PrefixScore
from espnet.nets.scorer_interface import BatchPartialScorerInterface

# (the utterances' prefix scorer, the hypotheses' forward variables)
State = Tuple[_PrefixScore, Optional[CTCState]]
FullState = Tuple[_PrefixScore, CTCFullState]


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

    def batch_init_state(self, memory: torch.Tensor, memory_lengths: torch.Tensor) -> State:
        logp = self.ctc.log_softmax(memory)
        return _PrefixScore(logp, memory_lengths, self.blank, self.eos), None

    def batch_score_partial(
        self, ys: torch.Tensor, ids: Optional[torch.Tensor], state: State
    ) -> Tuple[torch.Tensor, FullState]:
        impl, hyp_state = state
        delta, full = impl.score(ys, hyp_state, ids)
        return delta, (impl, full)

    def select_state(self, state: FullState, utts: torch.Tensor, prev_ids: torch.Tensor,
                     token_ids: torch.Tensor) -> State:
        impl, full = state
        r, s = _PrefixScore.select(full, utts, prev_ids, token_ids)
        if utts.numel() < impl.B:  # finished utterances leave the batch
            impl = impl.utterances(utts)
            r = r[: impl.T]
        return impl, (r, s)
