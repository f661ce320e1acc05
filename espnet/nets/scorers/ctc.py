"""CTC prefix scorer for joint CTC/attention beam search."""

from typing import Optional, Tuple

import torch

from espnet.nets.ctc_prefix_score import LOG_ZERO, CTCFullState, CTCState
from espnet.nets.ctc_prefix_score import CTCPrefixScorer as _PrefixScore
from espnet.nets.scorer_interface import BatchPartialScorerInterface

# (the utterances' prefix scorer, the hypotheses' forward variables)
State = Tuple[_PrefixScore, Optional[CTCState]]
FullState = Tuple[_PrefixScore, CTCFullState]


class CTCPrefixScorer(BatchPartialScorerInterface):
    """Wraps a CTC module (anything with ``log_softmax((B, T, D)) -> (B, T, C)``).

    Args:
        ctc: The CTC head.
        eos: End-of-sentence id (of the search vocabulary).
        blank: Blank id of the CTC head.
        token_offset: The CTC class of search token ``t`` is ``t + token_offset``. With 0
            the CTC classes are the search vocabulary (the Transformer decoder's, blank
            included). Otherwise (a pretrained decoder's vocabulary, CTC blank 0 and token
            ``t`` at ``t + 1``) the log-posteriors are rearranged into the search vocabulary
            of ``vocab_size`` tokens, the blank after them; tokens without a CTC class
            (output rows beyond the tokenizer) get ``LOG_ZERO``.
        vocab_size: ``V`` of the search (needed with a ``token_offset``).
    """

    def __init__(self, ctc: torch.nn.Module, eos: int, blank: int = 0, token_offset: int = 0,
                 vocab_size: Optional[int] = None) -> None:
        if token_offset and (blank != 0 or vocab_size is None):
            raise ValueError("a CTC token offset needs blank 0 and the search vocabulary size")
        self.ctc = ctc
        self.eos = eos
        self.blank = blank
        self.offset = token_offset
        self.vocab_size = vocab_size

    def search_log_probs(self, memory: torch.Tensor) -> torch.Tensor:
        """CTC log-posteriors of ``memory`` ``(B, T, D)`` over the search vocabulary:
        ``(B, T, C)`` as they are without an offset, else ``(B, T, V + 1)`` (blank = V)."""
        logp = self.ctc.log_softmax(memory)
        if not self.offset:
            return logp
        b, t, classes = logp.shape
        out = logp.new_full((b, t, self.vocab_size + 1), LOG_ZERO)
        shared = min(self.vocab_size, classes - self.offset)
        out[:, :, :shared] = logp[:, :, self.offset : self.offset + shared]
        out[:, :, -1] = logp[:, :, self.blank]
        return out

    def batch_init_state(self, memory: torch.Tensor, memory_lengths: torch.Tensor) -> State:
        blank = self.vocab_size if self.offset else self.blank
        return _PrefixScore(self.search_log_probs(memory), memory_lengths, blank, self.eos), None

    def batch_score_partial(
        self, ys: torch.Tensor, ids: Optional[torch.Tensor], state: State
    ) -> Tuple[torch.Tensor, FullState]:
        impl, hyp_state = state
        delta, full = impl.score(ys, hyp_state, ids)
        if self.offset:  # the blank column (LOG_ZERO) is not a search token
            delta = delta[:, :, : self.vocab_size]
        return delta, (impl, full)

    def batch_score_candidates(
        self, ys: torch.Tensor, ids: torch.Tensor, state: State
    ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor, FullState]:
        impl, hyp_state = state
        cand, delta, rest, full = impl.score_candidates(ys, hyp_state, ids)
        return cand, delta, rest, (impl, full)

    def select_state(self, state: FullState, utts: torch.Tensor, prev_ids: torch.Tensor,
                     token_ids: torch.Tensor) -> State:
        impl, full = state
        r, s = _PrefixScore.select(full, utts, prev_ids, token_ids)
        if utts.numel() < impl.B:  # finished utterances leave the batch
            impl = impl.utterances(utts)
            r = r[: impl.T]
        return impl, (r, s)
