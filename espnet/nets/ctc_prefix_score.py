"""Vectorised CTC prefix scoring over the running hypotheses of several utterances.

Implements Algorithm 2 of Watanabe et al., "Hybrid CTC/Attention Architecture for
End-to-End Speech Recognition" (2017), batched over utterances, hypotheses and candidate
tokens as in Seki et al. (Interspeech 2019). Log-probabilities use ``LOG_ZERO`` instead
of -inf. Utterances are padded to the longest one; the forward variables of the frames
after an utterance's length are never read (and not computed when the utterances come
longest first).
"""

from typing import Optional, Tuple

import torch

LOG_ZERO = -10000000000.0

# state: (r (T, 2, B, W), prefix score s (B, W)); r[:, 0] non-blank-ending, r[:, 1] blank-ending
CTCState = Tuple[torch.Tensor, torch.Tensor]
# full state before selection: (r (T, 2, B, W, K), prefix scores, scored ids (B, W, K) or None,
# candidates (B, W, K + 1) or None): with ids, the prefix scores (B, W, K + 1) of the candidates
# (the scored ids and eos); without, log_psi (B, W, V) of every token
CTCFullState = Tuple[torch.Tensor, torch.Tensor, Optional[torch.Tensor], Optional[torch.Tensor]]


class CTCPrefixScorer:
    """Prefix probabilities ``log p_ctc(h, ... | X)`` for candidate extensions ``h + c``.

    Args:
        logp: CTC log-posteriors ``(B, T, V)`` (frames after each length are padding).
        lengths: Frames per utterance ``(B,)``.
        blank: Blank id.
        eos: End-of-sentence id; its score is the probability of the full prefix.
    """

    def __init__(self, logp: torch.Tensor, lengths: torch.Tensor, blank: int, eos: int) -> None:
        self.logp = logp
        self.lengths = lengths.to(device=logp.device, dtype=torch.long)
        self.blank = blank
        self.eos = eos
        self.B, self.T, self.V = logp.shape
        if self.lengths.shape != (self.B,) or int(self.lengths.min()) < 1 or int(self.lengths.max()) > self.T:
            raise ValueError(f"CTC lengths {self.lengths.tolist()} do not fit log-posteriors of shape {tuple(logp.shape)}")
        # time-major log-probabilities: candidate tokens are gathered per frame, the blank broadcast
        self.logp_tm = logp.transpose(0, 1).contiguous()  # (T, B, V)
        self.blank_tm = self.logp_tm[:, :, blank].contiguous()  # (T, B)
        frames = torch.arange(self.T, device=logp.device).unsqueeze(1)
        padding = frames >= self.lengths.unsqueeze(0)  # (T, B)
        self.padding = padding if bool(padding.any()) else None
        self.min_length = int(self.lengths.min())
        # utterances still running at each frame: with the longest first (as evaluation
        # batches come), those are the first ``active[t]``, and the others are skipped
        lengths = self.lengths.tolist()
        longest_first = all(a >= b for a, b in zip(lengths, lengths[1:]))
        self.active = [sum(n > t for n in lengths) if longest_first else self.B for t in range(self.T)]

    def utterances(self, utts: torch.Tensor) -> "CTCPrefixScorer":
        """The scorer of the utterances ``utts`` only, cut to the longest of them."""
        lengths = self.lengths[utts]
        return CTCPrefixScorer(self.logp[utts, : int(lengths.max())], lengths, self.blank, self.eos)

    def initial_r(self, width: int) -> torch.Tensor:
        """Forward variables of the empty prefix: ``(T, 2, B, width)``."""
        r = torch.full((self.T, 2, self.B, width), LOG_ZERO, dtype=self.logp.dtype, device=self.logp.device)
        r[:, 1] = torch.cumsum(self.logp[:, :, self.blank], 1).t().unsqueeze(2)
        return r

    def score(
        self, ys: torch.Tensor, state: Optional[CTCState], ids: Optional[torch.Tensor]
    ) -> Tuple[torch.Tensor, CTCFullState]:
        """Score extensions of ``ys`` ``(B, W, L)`` (``L-1`` real tokens after ``sos``).

        Args:
            ids: Candidate tokens ``(B, W, K)``; ``None`` scores the whole vocabulary.

        Returns:
            ``log_psi - s_prev`` ``(B, W, V)`` (``LOG_ZERO`` outside ``ids``) and the state
            needed by :meth:`select`.
        """
        if ids is None:
            return self._score_all(ys, state)
        cand, delta, rest, full = self.score_candidates(ys, state, ids)
        dense = rest.unsqueeze(2).expand(-1, -1, self.V).clone()
        dense.scatter_(2, cand, delta)
        return dense, full

    def score_candidates(
        self, ys: torch.Tensor, state: Optional[CTCState], ids: torch.Tensor
    ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor, CTCFullState]:
        """:meth:`score` of the tokens that carry real values only, without the ``(B, W, V)``
        table: the candidates ``(B, W, K + 1)`` (``ids`` and ``eos``, whose score is the
        probability of the whole prefix), their ``log_psi - s_prev`` ``(B, W, K + 1)``, that
        of every other token ``(B, W)`` (``LOG_ZERO - s_prev``), and the state for
        :meth:`select`. The same values as :meth:`score`'s, to the bit."""
        B, W, _ = ys.shape
        psi_k, eos_score, r, s_prev = self._forward(ys, state, ids)
        cand = torch.cat([ids, ids.new_full((B, W, 1), self.eos)], dim=2)
        psi = torch.cat([psi_k, eos_score.unsqueeze(2)], dim=2)
        psi = torch.where(cand == self.eos, eos_score.unsqueeze(2), psi)
        psi = psi.masked_fill(cand == self.blank, LOG_ZERO)
        if s_prev is None:
            delta, rest = psi, psi.new_full((B, W), LOG_ZERO)
        else:
            delta, rest = psi - s_prev.unsqueeze(2), LOG_ZERO - s_prev
        return cand, delta, rest, (r, psi, ids, cand)

    def _score_all(self, ys: torch.Tensor, state: Optional[CTCState]) -> Tuple[torch.Tensor, CTCFullState]:
        """:meth:`score` of every token."""
        psi_k, eos_score, r, s_prev = self._forward(ys, state, None)
        log_psi = psi_k.clone()
        log_psi[:, :, self.eos] = eos_score
        log_psi[:, :, self.blank] = LOG_ZERO
        delta = log_psi if s_prev is None else log_psi - s_prev.unsqueeze(2)
        return delta, (r, log_psi, None, None)

    def _forward(
        self, ys: torch.Tensor, state: Optional[CTCState], ids: Optional[torch.Tensor]
    ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor, Optional[torch.Tensor]]:
        """Forward variables of the extensions by ``ids`` ``(B, W, K)`` (every token when
        ``None``, K = V): their prefix scores ``psi`` ``(B, W, K)``, the score of ending
        each prefix ``(B, W)``, the variables ``r`` ``(T, 2, B, W, K)`` and ``s_prev``.

        Only the frames from the prefix length on are computed (earlier ones cannot end an
        extension); candidate tokens' log-probabilities are gathered for those frames only,
        the blank's broadcast."""
        B, W, L = ys.shape
        T = self.T
        out_len = L - 1
        last = ys[:, :, -1]
        dtype, device = self.logp.dtype, self.logp.device
        if state is None:
            r_prev, s_prev = self.initial_r(W), None
        else:
            r_prev, s_prev = state

        start = max(out_len, 1)
        first = 0 if out_len == 0 else min(start, T)  # first frame whose token log-probs are read
        if ids is not None:
            k = ids.size(2)
            index = ids.reshape(1, B, W * k).expand(T - first, B, W * k)
            x_tok = torch.gather(self.logp_tm[first:], 2, index).view(T - first, B, W, k)
            has, pos = (ids == last.unsqueeze(2)).max(dim=2)  # column of the last token, if scored
        else:
            k = self.V
            x_tok = self.logp_tm[first:].unsqueeze(2)  # (T', B, 1, V): for every hypothesis
            has, pos = torch.ones_like(last, dtype=torch.bool), last
        x_blank = self.blank_tm.view(T, B, 1, 1)

        if self.padding is None:
            r = torch.empty((T, 2, B, W, k), dtype=dtype, device=device)
            r[:start].fill_(LOG_ZERO)  # r[start:] is written below
        else:  # frames after an utterance's end keep LOG_ZERO where they are skipped
            r = torch.full((T, 2, B, W, k), LOG_ZERO, dtype=dtype, device=device)
        if out_len == 0:
            r[0, 0] = x_tok[0]

        r_sum = torch.logsumexp(r_prev, 1)  # (T, B, W)
        # log_phi of frames start-1 .. T-2 (those the recursion and the prefix score read)
        log_phi = r_sum[start - 1 : T - 1].unsqueeze(3).repeat(1, 1, 1, k)  # (T - start, B, W, K)
        # a repeated label needs a blank in between: use the blank-ending path
        if bool(has.any()) and log_phi.size(0) > 0:
            b_idx, w_idx = torch.nonzero(has, as_tuple=True)
            log_phi[:, b_idx, w_idx, pos[b_idx, w_idx]] = r_prev[start - 1 : T - 1, 1, b_idx, w_idx]

        for t in range(start, T):
            b = self.active[t]
            rp = r[t - 1, :, :b]
            rr = torch.stack([rp[0], log_phi[t - start, :b], rp[0], rp[1]]).view(2, 2, b, W, k)
            lse = torch.logsumexp(rr, 1)
            torch.add(lse[0], x_tok[t - first, :b], out=r[t, 0, :b])
            torch.add(lse[1], x_blank[t, :b], out=r[t, 1, :b])

        log_phi_x = log_phi + x_tok[start - first :]  # frames start .. T-1: log_phi[t-1] + x[t]
        last_r = r[min(start, T) - 1, 0].unsqueeze(0)  # (1, B, W, K)
        if self.padding is not None:
            log_phi_x.masked_fill_(self.padding[start:].view(-1, B, 1, 1), LOG_ZERO)
        if start > self.min_length:  # a prefix longer than the utterance (explicit max length only)
            last_r = last_r.masked_fill((self.lengths < start).view(1, B, 1, 1), LOG_ZERO)
        psi_k = torch.logsumexp(torch.cat((log_phi_x, last_r), dim=0), dim=0)  # (B, W, K)
        eos_score = r_sum[self.lengths - 1, torch.arange(B, device=device)]  # (B, W)
        return psi_k, eos_score, r, s_prev

    @staticmethod
    def select(
        full_state: CTCFullState, utts: torch.Tensor, prev_ids: torch.Tensor, token_ids: torch.Tensor
    ) -> CTCState:
        """Keep the forward variables of the chosen ``(utterance, prev, token)`` triples
        (``utts`` ``(B',)``, ``prev_ids`` / ``token_ids`` ``(B', W')``).

        A token that was not scored takes the last scored column, as the reference
        implementation does; such hypotheses only end with ``eos``.
        """
        r, psi, ids, cand = full_state
        T, _, B, W, k = r.shape
        hyps = utts.view(-1, 1) * W + prev_ids  # (B', W') rows of the scored (B, W) layout
        if ids is None:
            picked = torch.index_select(r.view(T, 2, B * W * k), 2, (hyps * k + token_ids).view(-1))
            s = psi.view(-1)[hyps * psi.size(2) + token_ids]
            return picked.view(T, 2, *prev_ids.shape), s
        found, cols = (ids.view(B * W, k)[hyps] == token_ids.unsqueeze(2)).max(dim=2)
        cols = torch.where(found, cols, k - 1)
        picked = torch.index_select(r.view(T, 2, B * W * k), 2, (hyps * k + cols).view(-1))
        c = cand.size(2)
        found, cols = (cand.view(B * W, c)[hyps] == token_ids.unsqueeze(2)).max(dim=2)
        s = torch.where(found, psi.view(-1)[hyps * c + cols], torch.full_like(found, LOG_ZERO, dtype=psi.dtype))
        return picked.view(T, 2, *prev_ids.shape), s
