"""Joint CTC/attention beam search, vectorised over the beam.

Every running hypothesis of an utterance is scored in one call per scorer; the CTC
prefix scorer only scores the ``pre_beam`` best tokens of the decoder (the Auto-AVSR
default). Search order, pruning, end detection and tie handling follow ESPnet's
``BatchBeamSearch`` so that legacy checkpoints decode to the same token ids.
"""

import math
from dataclasses import dataclass
from typing import Any, Dict, List, Optional

import torch

from espnet.nets.scorer_interface import BatchPartialScorerInterface, BatchScorerInterface


@dataclass
class Hypothesis:
    """A finished hypothesis: ``yseq`` starts with ``sos`` and ends with ``eos``."""

    yseq: torch.Tensor
    score: float


def end_detect(ended: List[Hypothesis], i: int, m_window: int = 3, d_end: float = -10.0) -> bool:
    """Eq. (50) of Watanabe et al. (2017): stop when, for each of the last ``m_window``
    lengths, the best hypothesis that ended there is ``exp(d_end)`` worse than the best."""
    if not ended:
        return False
    best = max(h.score for h in ended)
    count = 0
    for m in range(m_window):
        same = [h.score for h in ended if len(h.yseq) == i - m]
        if same and max(same) - best < d_end:
            count += 1
    return count == m_window


class BatchBeamSearch(torch.nn.Module):
    """Beam search over one utterance's encoder output ``x`` ``(T, D)``.

    Args:
        scorers: Name -> scorer (``decoder``, ``ctc``, ``length_bonus`` ...).
        weights: Name -> weight; scorers with weight 0 are dropped.
        beam_size: Hypotheses kept per step.
        vocab_size: V.
        sos, eos: Start/end ids.
        pre_beam_ratio: Pre-beam size = ``int(pre_beam_ratio * beam_size)``.
        pre_beam_score_key: Full scorer whose scores choose the tokens that partial
            scorers (CTC) evaluate; ``None`` scores every token.
    """

    def __init__(
        self,
        scorers: Dict[str, Any],
        weights: Dict[str, float],
        beam_size: int,
        vocab_size: int,
        sos: int,
        eos: int,
        pre_beam_ratio: float = 1.5,
        pre_beam_score_key: Optional[str] = "decoder",
    ) -> None:
        super().__init__()
        self.weights = weights
        self.full_scorers: Dict[str, BatchScorerInterface] = {}
        self.part_scorers: Dict[str, BatchPartialScorerInterface] = {}
        for name, scorer in scorers.items():
            if scorer is None or weights.get(name, 0.0) == 0.0:
                continue
            if isinstance(scorer, BatchPartialScorerInterface):
                self.part_scorers[name] = scorer
            elif isinstance(scorer, BatchScorerInterface):
                self.full_scorers[name] = scorer
            else:
                raise TypeError(f"scorer {name!r} ({type(scorer).__name__}) is not a batch scorer")
        if not self.full_scorers and not self.part_scorers:
            raise ValueError("beam search needs at least one scorer with a non-zero weight")
        self.beam_size = beam_size
        self.pre_beam_size = int(pre_beam_ratio * beam_size)
        self.n_vocab = vocab_size
        self.sos, self.eos = sos, eos
        if pre_beam_score_key is not None and pre_beam_score_key not in self.full_scorers:
            pre_beam_score_key = None
        self.pre_beam_score_key = pre_beam_score_key
        self.do_pre_beam = (
            pre_beam_score_key is not None
            and self.pre_beam_size < self.n_vocab
            and len(self.part_scorers) > 0
        )

    @property
    def scorers(self) -> Dict[str, Any]:
        return {**self.full_scorers, **self.part_scorers}

    @torch.no_grad()
    def forward(self, x: torch.Tensor, maxlenratio: float = 0.0, minlenratio: float = 0.0) -> List[Hypothesis]:
        """N-best list (best first) for encoder output ``x`` ``(T, D)``.

        ``maxlenratio == 0`` sets ``maxlen = T`` and enables end detection; a negative
        value is an absolute maximum length.
        """
        if maxlenratio == 0:
            maxlen = x.size(0)
        elif maxlenratio < 0:
            maxlen = -int(maxlenratio)
        else:
            maxlen = max(1, int(maxlenratio * x.size(0)))
        minlen = int(minlenratio * x.size(0))

        device = x.device
        states = {name: s.batch_init_state(x) for name, s in self.scorers.items()}
        yseq = torch.full((1, 1), self.sos, dtype=torch.long, device=device)
        score = torch.zeros(1, dtype=x.dtype, device=device)
        ended: List[Hypothesis] = []

        for i in range(maxlen):
            n = yseq.size(0)
            weighted = torch.zeros(n, self.n_vocab, dtype=x.dtype, device=device)
            full_scores, full_states = {}, {}
            xs = x.unsqueeze(0).expand(n, *x.shape)
            for name, scorer in self.full_scorers.items():
                full_scores[name], full_states[name] = scorer.batch_score(yseq, states[name], xs)
                weighted += self.weights[name] * full_scores[name]
            part_ids = None
            if self.do_pre_beam:
                part_ids = torch.topk(full_scores[self.pre_beam_score_key], self.pre_beam_size, dim=-1)[1]
            part_states = {}
            for name, scorer in self.part_scorers.items():
                part_score, part_states[name] = scorer.batch_score_partial(yseq, part_ids, states[name], x)
                weighted += self.weights[name] * part_score
            weighted += score.unsqueeze(1)
            if i < minlen:
                weighted[:, self.eos] = -math.inf

            top = weighted.view(-1).topk(self.beam_size)[1]
            prev_ids = torch.div(top, self.n_vocab, rounding_mode="trunc")
            tok_ids = top % self.n_vocab
            score = weighted[prev_ids, tok_ids]
            yseq = torch.cat([yseq[prev_ids], tok_ids.unsqueeze(1)], dim=1)

            if i == maxlen - 1:  # force an end so that at least one hypothesis finishes
                yseq = torch.cat([yseq, yseq.new_full((yseq.size(0), 1), self.eos)], dim=1)
            is_eos = yseq[:, -1] == self.eos
            for b in torch.nonzero(is_eos).view(-1).tolist():
                ended.append(Hypothesis(yseq=yseq[b].clone(), score=float(score[b])))
            if maxlenratio == 0.0 and end_detect(ended, i):
                break
            keep = torch.nonzero(~is_eos).view(-1)
            if keep.numel() == 0:
                break
            prev_ids, tok_ids = prev_ids[keep], tok_ids[keep]
            yseq, score = yseq[keep], score[keep]
            states = {
                name: self.full_scorers[name].select_state(st, prev_ids, tok_ids)
                for name, st in full_states.items()
            }
            states.update(
                {
                    name: self.part_scorers[name].select_state(st, prev_ids, tok_ids)
                    for name, st in part_states.items()
                }
            )

        return sorted(ended, key=lambda h: h.score, reverse=True)
