"""Vectorised CTC prefix scoring over all running hypotheses of one utterance.

Implements Algorithm 2 of Watanabe et al., "Hybrid CTC/Attention Architecture for
End-to-End Speech Recognition" (2017), batched over hypotheses and candidate tokens as
in Seki et al. (Interspeech 2019). Log-probabilities use ``LOG_ZERO`` instead of -inf.
"""

from typing import Optional, Tuple

import torch

LOG_ZERO = -10000000000.0

# state: (r (T, 2, n), prefix score s (n,)) ; r[:, 0] non-blank-ending, r[:, 1] blank-ending
CTCState = Tuple[torch.Tensor, torch.Tensor]
# full state before selection: (r (T, 2, n, K), log_psi (n, V), id_map (n, V) or None)
CTCFullState = Tuple[torch.Tensor, torch.Tensor, Optional[torch.Tensor]]


class CTCPrefixScorer:
    """Prefix probabilities ``log p_ctc(h, ... | X)`` for candidate extensions ``h + c``.

    Args:
        logp: CTC log-posteriors ``(T, V)`` of one utterance.
        blank: Blank id.
        eos: End-of-sentence id; its score is the probability of the full prefix.
    """

    def __init__(self, logp: torch.Tensor, blank: int, eos: int) -> None:
        self.logp = logp
        self.blank = blank
        self.eos = eos
        self.T, self.V = logp.shape
        # (2, T, V): row 0 = token log-probs, row 1 = blank log-prob for every column
        self.x = torch.stack([logp, logp[:, blank : blank + 1].expand(-1, self.V)])

    def initial_r(self, n: int) -> torch.Tensor:
        """Forward variables of the empty prefix: ``(T, 2, n)``."""
        r = torch.full((self.T, 2, n), LOG_ZERO, dtype=self.logp.dtype, device=self.logp.device)
        r[:, 1] = torch.cumsum(self.logp[:, self.blank], 0).unsqueeze(1)
        return r

    def score(
        self, ys: torch.Tensor, state: Optional[CTCState], ids: Optional[torch.Tensor]
    ) -> Tuple[torch.Tensor, CTCFullState]:
        """Score extensions of ``ys`` ``(n, L)`` (``L-1`` real tokens after ``sos``).

        Args:
            ids: Candidate tokens ``(n, K)``; ``None`` scores the whole vocabulary.

        Returns:
            ``log_psi - s_prev`` ``(n, V)`` (``LOG_ZERO`` outside ``ids``) and the state
            needed by :meth:`select`.
        """
        n = ys.size(0)
        out_len = ys.size(1) - 1
        last = ys[:, -1]
        dtype, device = self.logp.dtype, self.logp.device
        if state is None:
            r_prev, s_prev = self.initial_r(n), None
        else:
            r_prev, s_prev = state
        hyp = torch.arange(n, device=device)

        if ids is not None:
            k = ids.size(1)
            id_map = torch.full((n, self.V), -1, dtype=torch.long, device=device)
            id_map[hyp.unsqueeze(1), ids] = torch.arange(k, device=device)
            x_ = self.x[:, :, ids.reshape(-1)].view(2, self.T, n, k)
        else:
            k = self.V
            id_map = None
            x_ = self.x.unsqueeze(2).expand(2, self.T, n, k)

        r = torch.full((self.T, 2, n, k), LOG_ZERO, dtype=dtype, device=device)
        if out_len == 0:
            r[0, 0] = x_[0, 0]

        r_sum = torch.logsumexp(r_prev, 1)  # (T, n)
        log_phi = r_sum.unsqueeze(2).repeat(1, 1, k)  # (T, n, K)
        # a repeated label needs a blank in between: use the blank-ending path
        pos = last if id_map is None else id_map[hyp, last]
        has = pos >= 0
        if bool(has.any()):
            h_idx = hyp[has]
            log_phi[:, h_idx, pos[has]] = r_prev[:, 1, h_idx]

        start = max(out_len, 1)
        for t in range(start, self.T):
            rp = r[t - 1]
            rr = torch.stack([rp[0], log_phi[t - 1], rp[0], rp[1]]).view(2, 2, n, k)
            r[t] = torch.logsumexp(rr, 1) + x_[:, t]

        log_phi_x = torch.cat((log_phi[0].unsqueeze(0), log_phi[:-1]), dim=0) + x_[0]
        psi_k = torch.logsumexp(
            torch.cat((log_phi_x[start:], r[start - 1, 0].unsqueeze(0)), dim=0), dim=0
        )  # (n, K)
        if ids is not None:
            log_psi = torch.full((n, self.V), LOG_ZERO, dtype=dtype, device=device)
            log_psi.scatter_(1, ids, psi_k)
        else:
            log_psi = psi_k.clone()
        log_psi[:, self.eos] = r_sum[self.T - 1]
        log_psi[:, self.blank] = LOG_ZERO
        delta = log_psi if s_prev is None else log_psi - s_prev.unsqueeze(1)
        return delta, (r, log_psi, id_map)

    @staticmethod
    def select(
        full_state: CTCFullState, prev_ids: torch.Tensor, token_ids: torch.Tensor
    ) -> CTCState:
        """Keep the forward variables of the chosen ``(prev, token)`` pairs.

        A token that was not scored (index -1 in the map) takes the last scored column,
        as the reference implementation does; such hypotheses only end with ``eos``.
        """
        r, log_psi, id_map = full_state
        if id_map is None:
            cols = token_ids
        else:
            cols = id_map[prev_ids, token_ids]
            cols = torch.where(cols < 0, cols + r.size(3), cols)
        return r[:, :, prev_ids, cols], log_psi[prev_ids, token_ids]
