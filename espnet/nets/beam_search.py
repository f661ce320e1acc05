"""Joint CTC/attention beam search, vectorised over the beam and over utterances.

The running hypotheses of ``B`` utterances live in one ``(B, W)`` layout (utterance x
hypothesis slot) and every scorer scores them in one call per step; the CTC prefix scorer
only scores the ``pre_beam`` best tokens of the decoder (the Auto-AVSR default). Each
utterance keeps its own maximum length, end detection and finished list, and leaves the
batch when it is done. Search order, pruning, end detection and tie handling follow
ESPnet's ``BatchBeamSearch`` so that legacy checkpoints decode to the same token ids, and
an utterance decodes to the same hypotheses alone or in a batch.
"""

import math
import time
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


def length_limits(frames: int, maxlenratio: float, minlenratio: float) -> tuple:
    """``(maxlen, minlen)`` in tokens for an utterance of ``frames`` encoder frames:
    ``maxlenratio == 0`` -> ``frames``; negative -> ``-maxlenratio`` tokens; positive ->
    ``max(1, int(maxlenratio * frames))``."""
    if maxlenratio == 0:
        maxlen = frames
    elif maxlenratio < 0:
        maxlen = -int(maxlenratio)
    else:
        maxlen = max(1, int(maxlenratio * frames))
    return maxlen, int(minlenratio * frames)


class BatchBeamSearch(torch.nn.Module):
    """Beam search over the encoder outputs of one or many utterances.

    Args:
        scorers: Name -> scorer (``decoder``, ``ctc``, ``length_bonus`` ...).
        weights: Name -> weight; scorers with weight 0 are dropped.
        beam_size: Hypotheses kept per step and utterance.
        vocab_size: V.
        sos, eos: Start/end ids.
        pre_beam_ratio: Pre-beam size = ``int(pre_beam_ratio * beam_size)``.
        pre_beam_score_key: Full scorer whose scores choose the tokens that partial
            scorers (CTC) evaluate; ``None`` scores every token.
        stop_at_best_ended: With an explicit maximum length (``maxlenratio < 0``, no end
            detection), an utterance stops as soon as its best finished hypothesis scores
            at least as high as its best running one. Exact when no score increment is
            positive (log-probabilities, CTC prefix scores, no positive length bonus): the
            best hypothesis is the one the search finds without it; only the n-best list
            after it is shorter.

    ``timings``: set it to a dict to accumulate wall seconds per scorer name (plus
    ``search`` for the rest of the step) over the following calls (synchronising CUDA).
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
        stop_at_best_ended: bool = False,
    ) -> None:
        super().__init__()
        if not 1 <= beam_size <= vocab_size:
            raise ValueError(f"beam size must be in [1, vocabulary size {vocab_size}], got {beam_size}")
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
        self.stop_at_best_ended = stop_at_best_ended
        self.timings: Optional[Dict[str, float]] = None

    @property
    def scorers(self) -> Dict[str, Any]:
        return {**self.full_scorers, **self.part_scorers}

    def _now(self, device: torch.device) -> float:
        """Wall clock, after the device's queued work when profiling on CUDA."""
        if self.timings is not None and device.type == "cuda":
            torch.cuda.synchronize(device)
        return time.perf_counter()

    def _tick(self, name: str, since: float, device: torch.device) -> float:
        """Add the seconds since ``since`` to ``timings[name]`` (when profiling); now."""
        if self.timings is None:
            return since
        now = self._now(device)
        self.timings[name] = self.timings.get(name, 0.0) + now - since
        return now

    @torch.no_grad()
    def forward(self, x: torch.Tensor, maxlenratio: float = 0.0, minlenratio: float = 0.0) -> List[Hypothesis]:
        """N-best list (best first) for one utterance's encoder output ``x`` ``(T, D)``.

        ``maxlenratio == 0`` sets ``maxlen = T`` and enables end detection; a negative
        value is an absolute maximum length.
        """
        lengths = torch.tensor([x.size(0)], device=x.device)
        return self.batch_forward(x.unsqueeze(0), lengths, maxlenratio, minlenratio)[0]

    @torch.no_grad()
    def batch_forward(
        self, memory: torch.Tensor, memory_lengths: torch.Tensor, maxlenratio: float = 0.0, minlenratio: float = 0.0
    ) -> List[List[Hypothesis]]:
        """N-best lists (best first), one per utterance, decoded together.

        Args:
            memory: Encoder outputs ``(B, T, D)``, each padded after its length.
            memory_lengths: ``(B,)`` frames; each utterance's maximum/minimum length
                follows from its own length as in :meth:`forward`.

        Returns:
            For each utterance the hypotheses :meth:`forward` gives for it alone.
        """
        n_utts, frames = memory.shape[:2]
        lengths = memory_lengths.to(memory.device).long()
        if lengths.shape != (n_utts,) or n_utts == 0 or int(lengths.min()) < 1 or int(lengths.max()) > frames:
            raise ValueError(f"memory lengths {lengths.tolist()} do not fit memory of shape {tuple(memory.shape)}")
        limits = [length_limits(t, maxlenratio, minlenratio) for t in lengths.tolist()]
        device, beam, n_vocab = memory.device, self.beam_size, self.n_vocab
        # scores add up over the tokens: at least float32 (bfloat16 memory would round them to 0.1)
        dtype = torch.promote_types(memory.dtype, torch.float32)
        clock = self._now(device)
        states = {}
        for name, scorer in self.scorers.items():
            states[name] = scorer.batch_init_state(memory, lengths)
            clock = self._tick(name, clock, device)
        ended: List[List[Hypothesis]] = [[] for _ in range(n_utts)]
        alive = list(range(n_utts))  # utterance of each batch row
        yseq = torch.full((n_utts, 1, 1), self.sos, dtype=torch.long, device=device)  # (B, W, L)
        score = torch.zeros(n_utts, 1, dtype=dtype, device=device)  # (B, W)
        live: Optional[torch.Tensor] = None  # (B, W) False for empty slots; None = all live

        for i in range(max(maxlen for maxlen, _ in limits)):
            n_rows, width = yseq.shape[:2]
            # the weighted sum of the scores (B, W, V), added up in the reference order
            # (0 + w_1 s_1 + w_2 s_2 ...: the first product is the sum so far, to the bit)
            weighted: Optional[torch.Tensor] = None
            full_scores, full_states = {}, {}
            for name, scorer in self.full_scorers.items():
                full_scores[name], full_states[name] = scorer.batch_score(yseq, states[name])
                term = self.weights[name] * full_scores[name]
                weighted = term.to(dtype) if weighted is None else weighted.add_(term)
                clock = self._tick(name, clock, device)
            if weighted is None:
                weighted = torch.zeros(n_rows, width, n_vocab, dtype=dtype, device=device)
            part_ids = None
            if self.do_pre_beam:
                part_ids = torch.topk(full_scores[self.pre_beam_score_key], self.pre_beam_size, dim=-1)[1]
            part_states = {}
            for name, scorer in self.part_scorers.items():
                if part_ids is not None and getattr(type(scorer), "batch_score_candidates", None) not in (
                        None, BatchPartialScorerInterface.batch_score_candidates):
                    # the scorer's values at its candidates only, the same number for all others
                    cand, delta, rest, part_states[name] = scorer.batch_score_candidates(
                        yseq, part_ids, states[name])
                    at_cand = weighted.gather(2, cand) + self.weights[name] * delta
                    weighted.add_((self.weights[name] * rest).unsqueeze(2))
                    weighted.scatter_(2, cand, at_cand)
                else:
                    part_score, part_states[name] = scorer.batch_score_partial(yseq, part_ids, states[name])
                    weighted += self.weights[name] * part_score
                clock = self._tick(name, clock, device)
            weighted += score.unsqueeze(2)
            short = [row for row, u in enumerate(alive) if i < limits[u][1]]
            if short:
                weighted[short, :, self.eos] = -math.inf
            if live is not None:
                weighted.masked_fill_(~live.unsqueeze(2), -math.inf)

            score, top = weighted.view(n_rows, -1).topk(beam, dim=1)  # (B, beam), best first
            prev_ids = torch.div(top, n_vocab, rounding_mode="trunc")
            tok_ids = top % n_vocab
            rows = torch.arange(n_rows, device=device).unsqueeze(1)
            yseq = torch.cat([yseq[rows, prev_ids], tok_ids.unsqueeze(2)], dim=2)
            is_eos = tok_ids == self.eos

            # finished hypotheses; an utterance at its maximum length ends all of its own
            forced = [row for row, u in enumerate(alive) if i == limits[u][0] - 1]
            if forced:
                is_eos[forced] = True
            eos_rows, eos_slots = torch.nonzero(is_eos, as_tuple=True)
            eos_scores = score[eos_rows, eos_slots].tolist()
            forced_set = set(forced)
            for row, slot, value in zip(eos_rows.tolist(), eos_slots.tolist(), eos_scores):
                seq = yseq[row, slot]
                if row in forced_set:
                    seq = torch.cat([seq, seq.new_full((1,), self.eos)])
                ended[alive[row]].append(Hypothesis(yseq=seq.clone(), score=value))
            all_eos = is_eos.all(dim=1).tolist()
            beaten = [False] * len(alive)
            if self.stop_at_best_ended and maxlenratio < 0 and any(ended[u] for u in alive):
                running_best = score.masked_fill(is_eos, -math.inf).max(dim=1).values.tolist()
                beaten = [bool(ended[u]) and max(h.score for h in ended[u]) >= running_best[row]
                          for row, u in enumerate(alive)]
            going = [
                row for row, u in enumerate(alive)
                if not (row in forced_set or (maxlenratio == 0.0 and end_detect(ended[u], i)) or all_eos[row]
                        or beaten[row])
            ]
            if not going:
                break

            # keep the unfinished hypotheses of the unfinished utterances, in score order
            utts = torch.tensor(going, device=device)
            keep = ~is_eos[utts]  # (B', beam)
            counts = keep.sum(dim=1)
            new_width = int(counts.max())
            order = torch.sort((~keep).to(torch.uint8), dim=1, stable=True)[1][:, :new_width]
            live = torch.arange(new_width, device=device).unsqueeze(0) < counts.unsqueeze(1)
            if bool(live.all()):
                live = None
            prev_ids, tok_ids = prev_ids[utts].gather(1, order), tok_ids[utts].gather(1, order)
            score = score[utts].gather(1, order)
            yseq = yseq[utts.unsqueeze(1), order]
            clock = self._tick("search", clock, device)
            for name, st in {**full_states, **part_states}.items():
                states[name] = self.scorers[name].select_state(st, utts, prev_ids, tok_ids)
                clock = self._tick(name, clock, device)
            alive = [alive[row] for row in going]

        return [sorted(hyps, key=lambda h: h.score, reverse=True) for hyps in ended]
