"""Batched scorer interface used by :class:`espnet.nets.beam_search.BatchBeamSearch`.

All states are batched over the running hypotheses ``n``; selection takes index tensors
so that no Python loop over hypotheses is needed.
"""

from typing import Any, Optional, Tuple

import torch


class BatchScorerInterface:
    """A scorer that scores every vocabulary entry for each running hypothesis."""

    def batch_init_state(self, x: torch.Tensor) -> Any:
        """Initial state for encoder output ``x`` ``(T, D)`` of one utterance."""
        return None

    def batch_score(
        self, ys: torch.Tensor, state: Any, xs: torch.Tensor
    ) -> Tuple[torch.Tensor, Any]:
        """Scores ``(n, V)`` of the next token for prefixes ``ys`` ``(n, L)``.

        ``xs`` is the encoder output expanded to ``(n, T, D)``.
        """
        raise NotImplementedError

    def select_state(
        self, state: Any, prev_ids: torch.Tensor, token_ids: torch.Tensor
    ) -> Any:
        """State of the hypotheses that extend ``prev_ids`` with ``token_ids`` (both ``(k,)``)."""
        raise NotImplementedError


class BatchPartialScorerInterface(BatchScorerInterface):
    """A scorer that only scores a pre-selected subset of tokens (e.g. CTC prefix score)."""

    def batch_score_partial(
        self, ys: torch.Tensor, ids: Optional[torch.Tensor], state: Any, x: torch.Tensor
    ) -> Tuple[torch.Tensor, Any]:
        """Scores ``(n, V)`` where only ``ids`` ``(n, K)`` (all tokens if ``None``) carry
        real values; ``x`` is ``(T, D)``."""
        raise NotImplementedError
