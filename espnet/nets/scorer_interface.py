"""Batched scorer interface used by :class:`espnet.nets.beam_search.BatchBeamSearch`.

Scorers see the running hypotheses of ``B`` utterances at once, laid out as ``(B, W)``
(utterance x hypothesis slot, ``W <= beam``). States are batched the same way, and
selection takes index tensors, so no Python loop over utterances or hypotheses is needed.
"""

from typing import Any, Optional, Tuple

import torch


class BatchScorerInterface:
    """A scorer that scores every vocabulary entry for each running hypothesis."""

    def batch_init_state(self, memory: torch.Tensor, memory_lengths: torch.Tensor) -> Any:
        """Initial state for encoder outputs ``memory`` ``(B, T, D)`` (padded after each
        utterance's length) and ``memory_lengths`` ``(B,)`` (frames)."""
        return None

    def batch_score(self, ys: torch.Tensor, state: Any) -> Tuple[torch.Tensor, Any]:
        """Scores ``(B, W, V)`` of the next token for prefixes ``ys`` ``(B, W, L)`` and the
        state that :meth:`select_state` picks from."""
        raise NotImplementedError

    def select_state(
        self, state: Any, utts: torch.Tensor, prev_ids: torch.Tensor, token_ids: torch.Tensor
    ) -> Any:
        """State of the next step: slot ``(b, w)`` extends hypothesis ``prev_ids[b, w]`` of
        the scored utterance ``utts[b]`` with ``token_ids[b, w]``.

        Args:
            utts: ``(B',)`` indices of the utterances that go on (finished ones dropped).
            prev_ids, token_ids: ``(B', W')``.
        """
        raise NotImplementedError


class BatchPartialScorerInterface(BatchScorerInterface):
    """A scorer that only scores a pre-selected subset of tokens (e.g. CTC prefix score)."""

    def batch_score_partial(
        self, ys: torch.Tensor, ids: Optional[torch.Tensor], state: Any
    ) -> Tuple[torch.Tensor, Any]:
        """Scores ``(B, W, V)`` where only ``ids`` ``(B, W, K)`` (all tokens if ``None``)
        carry real values."""
        raise NotImplementedError

    def batch_score_candidates(
        self, ys: torch.Tensor, ids: torch.Tensor, state: Any
    ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor, Any]:
        """:meth:`batch_score_partial` without the ``(B, W, V)`` table (optional: the beam
        search uses it when a scorer has it): the tokens that carry real values ``(B, W, C)``
        (``ids`` ``(B, W, K)`` and any the scorer adds), their scores ``(B, W, C)``, the
        score of every other token ``(B, W)``, and the state."""
        raise NotImplementedError
