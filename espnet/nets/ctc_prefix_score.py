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
# full state before selection: (r (T, 2, B, W, K), log_psi (B, W, V), scored ids (B, W, K) or None)
CTCFullState = Tuple[torch.Tensor, torch.Tensor, Optional[torch.Tensor]]


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
        # (B * V, 2, T), token-major so that gathering candidate tokens copies whole rows:
        # [:, 0] = the token's log-probs, [:, 1] = the blank log-prob, over time
        x = torch.stack([logp, logp[:, :, blank : blank + 1].expand(-1, -1, self.V)], dim=2)  # (B, T, 2, V)
        self.x = x.permute(0, 3, 2, 1).reshape(self.B * self.V, 2, self.T)
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
        B, W, L = ys.shape
        T, V = self.T, self.V
        out_len = L - 1
        last = ys[:, :, -1]
        dtype, device = self.logp.dtype, self.logp.device
        if state is None:
            r_prev, s_prev = self.initial_r(W), None
        else:
            r_prev, s_prev = state

        if ids is not None:
            k = ids.size(2)
            columns = ids + (torch.arange(B, device=device) * V).view(B, 1, 1)
            x_ = torch.index_select(self.x, 0, columns.view(-1)).view(B, W, k, 2, T)
            x_ = x_.permute(3, 4, 0, 1, 2).contiguous()  # (2, T, B, W, K)
            has, pos = (ids == last.unsqueeze(2)).max(dim=2)  # column of the last token, if scored
        else:
            k = V
            x_ = self.x.view(B, V, 2, T).permute(2, 3, 0, 1).unsqueeze(3)  # (2, T, B, 1, V): for every hypothesis
            has, pos = torch.ones_like(last, dtype=torch.bool), last

        start = max(out_len, 1)
        if self.padding is None:
            r = torch.empty((T, 2, B, W, k), dtype=dtype, device=device)
            r[:start].fill_(LOG_ZERO)  # r[start:] is written below
        else:  # frames after an utterance's end keep LOG_ZERO where they are skipped
            r = torch.full((T, 2, B, W, k), LOG_ZERO, dtype=dtype, device=device)
        if out_len == 0:
            r[0, 0] = x_[0, 0]

        r_sum = torch.logsumexp(r_prev, 1)  # (T, B, W)
        log_phi = r_sum.unsqueeze(3).repeat(1, 1, 1, k)  # (T, B, W, K)
        # a repeated label needs a blank in between: use the blank-ending path
        if bool(has.any()):
            b_idx, w_idx = torch.nonzero(has, as_tuple=True)
            log_phi[:, b_idx, w_idx, pos[b_idx, w_idx]] = r_prev[:, 1, b_idx, w_idx]

        for t in range(start, T):
            b = self.active[t]
            rp = r[t - 1, :, :b]
            rr = torch.stack([rp[0], log_phi[t - 1, :b], rp[0], rp[1]]).view(2, 2, b, W, k)
            r[t, :, :b] = torch.logsumexp(rr, 1) + x_[:, t, :b]

        log_phi_x = torch.cat((log_phi[0].unsqueeze(0), log_phi[:-1]), dim=0) + x_[0]  # (T, B, W, K)
        last_r = r[min(start, T) - 1, 0].unsqueeze(0)  # (1, B, W, K)
        if self.padding is not None:
            log_phi_x.masked_fill_(self.padding.view(T, B, 1, 1), LOG_ZERO)
        if start > self.min_length:  # a prefix longer than the utterance (explicit max length only)
            last_r = last_r.masked_fill((self.lengths < start).view(1, B, 1, 1), LOG_ZERO)
        psi_k = torch.logsumexp(torch.cat((log_phi_x[start:], last_r), dim=0), dim=0)  # (B, W, K)
        if ids is not None:
            log_psi = torch.full((B, W, V), LOG_ZERO, dtype=dtype, device=device)
            log_psi.scatter_(2, ids, psi_k)
        else:
            log_psi = psi_k.clone()
        log_psi[:, :, self.eos] = r_sum[self.lengths - 1, torch.arange(B, device=device)]
        log_psi[:, :, self.blank] = LOG_ZERO
        delta = log_psi if s_prev is None else log_psi - s_prev.unsqueeze(2)
        return delta, (r, log_psi, ids)

    @staticmethod
    def select(
        full_state: CTCFullState, utts: torch.Tensor, prev_ids: torch.Tensor, token_ids: torch.Tensor
    ) -> CTCState:
        """Keep the forward variables of the chosen ``(utterance, prev, token)`` triples
        (``utts`` ``(B',)``, ``prev_ids`` / ``token_ids`` ``(B', W')``).

        A token that was not scored takes the last scored column, as the reference
        implementation does; such hypotheses only end with ``eos``.
        """
        r, log_psi, ids = full_state
        T, _, B, W, k = r.shape
        hyps = utts.view(-1, 1) * W + prev_ids  # (B', W') rows of the scored (B, W) layout
        if ids is None:
            cols = token_ids
        else:
            found, cols = (ids.view(B * W, k)[hyps] == token_ids.unsqueeze(2)).max(dim=2)
            cols = torch.where(found, cols, k - 1)
        picked = torch.index_select(r.view(T, 2, B * W * k), 2, (hyps * k + cols).view(-1))
        s = log_psi.view(-1)[hyps * log_psi.size(2) + token_ids]
        return picked.view(T, 2, *prev_ids.shape), s
