"""CTC head and loss."""

from typing import List, Optional, Tuple

import torch

from espnet.nets.pytorch_backend.dropout import Dropout
from espnet.nets.pytorch_backend.nets_utils import make_non_pad_mask


class CTC(torch.nn.Module):
    """Linear projection to the vocabulary plus the CTC loss.

    The loss is summed over the batch and divided by the batch size (as in ESPnet).

    Args:
        odim: Vocabulary size V (blank = 0).
        eprojs: Encoder output size D.
        dropout_rate: Dropout before the projection (training only).
        ignore_id: Padding id in targets.
    """

    def __init__(self, odim: int, eprojs: int, dropout_rate: float = 0.1, ignore_id: int = -1) -> None:
        super().__init__()
        self.ctc_lo = torch.nn.Linear(eprojs, odim)
        self.dropout = Dropout(dropout_rate)
        self.ctc_loss = torch.nn.CTCLoss(reduction="sum", zero_infinity=True)
        self.ignore_id = ignore_id

    def forward(
        self, hs_pad: torch.Tensor, hlens: torch.Tensor, ys_pad: torch.Tensor
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """Loss for ``hs_pad`` ``(B, T, D)``, ``hlens`` ``(B,)``, ``ys_pad`` ``(B, L)``.

        Returns:
            Scalar loss and the logits ``(B, T, V)``.
        """
        logits = self.ctc_lo(self.dropout(hs_pad))
        ys = [y[y != self.ignore_id] for y in ys_pad]
        olens = torch.tensor([len(y) for y in ys], dtype=torch.long, device=logits.device)
        logp = logits.transpose(0, 1).log_softmax(2).float()  # (T, B, V)
        loss = self.ctc_loss(logp, torch.cat(ys).to(logits.device), hlens.long(), olens)
        return loss / logits.size(0), logits

    def log_softmax(self, hs_pad: torch.Tensor) -> torch.Tensor:
        """``(B, T, D) -> (B, T, V)`` log-posteriors."""
        return torch.log_softmax(self.ctc_lo(hs_pad), dim=-1)

    def argmax(self, hs_pad: torch.Tensor) -> torch.Tensor:
        """Greedy frame labels ``(B, T)``."""
        return torch.argmax(self.ctc_lo(hs_pad), dim=-1)


def path_frames(classes: torch.Tensor, lengths: torch.Tensor,
                blank: int = 0) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The frames of the best CTC paths whose frame classes are ``classes`` ``(B, T)`` (the
    argmax of each frame), as three ``(B, T)`` bool masks: ``inside`` each utterance's
    ``lengths[i]`` frames; ``emits``: inside and not blank; ``starts``: an emitting frame
    that begins a path token (its class differs from the previous frame's)."""
    inside = make_non_pad_mask(lengths, classes.size(1)).to(classes.device)
    emits = (classes != blank) & inside
    starts = emits.clone()
    starts[:, 1:] &= classes[:, 1:] != classes[:, :-1]
    return inside, emits, starts


def best_paths(logp: torch.Tensor, lengths: torch.Tensor, blank: int = 0) -> List[Tuple[List[int], float]]:
    """Best CTC path of each utterance of a padded batch: the argmax class of each of its
    ``lengths[i]`` frames, repeats merged, blanks dropped, with the sum of the chosen classes'
    log-probabilities.

    Args:
        logp: Log-posteriors ``(B, T, V)`` (:meth:`CTC.log_softmax`).
        lengths: ``(B,)`` frames of each utterance.
        blank: The blank class.

    Returns:
        ``B`` pairs ``(classes, score)``.
    """
    best, classes = logp.float().max(dim=-1)  # (B, T)
    inside, _, starts = path_frames(classes, lengths, blank)
    scores = best.masked_fill(~inside, 0.0).sum(dim=1).tolist()
    labels = classes[starts].tolist()  # every path, one after another: one transfer for the batch
    out, start = [], 0
    for count, score in zip(starts.sum(dim=1).tolist(), scores):
        out.append((labels[start : start + count], score))
        start += count
    return out


def path_token_index(classes: torch.Tensor, lengths: torch.Tensor, blank: int = 0) -> torch.Tensor:
    """Per frame, the position of the token of the best CTC path (frame classes ``classes``
    ``(B, T)``, the argmax of each frame; :func:`best_paths`) it emits: ``(B, T)`` int64,
    ``-1`` on blank frames and padding."""
    _, emits, starts = path_frames(classes, lengths, blank)
    token = torch.cumsum(starts.long(), dim=1) - 1
    return token.masked_fill(~emits, -1)


def token_reduce(values: torch.Tensor, index: torch.Tensor, count: int, reduce: str) -> torch.Tensor:
    """``values`` ``(B, T, V)`` reduced over the frames of each token: ``(B, count, V)``, row
    ``k`` the ``reduce`` (``"amax"`` or ``"mean"``) of the frames whose ``index`` ``(B, T)``
    is ``k`` (``-1``: no token); a token without frames gets ``-inf`` (``amax``) or zeros
    (``mean``)."""
    b, t, v = values.shape
    slot = torch.where(index >= 0, index, torch.full_like(index, count))  # other frames: one slot past the end
    fill = float("-inf") if reduce == "amax" else 0.0
    out = values.new_full((b, count + 1, v), fill)
    out.scatter_reduce_(1, slot.unsqueeze(-1).expand(b, t, v), values, reduce=reduce, include_self=reduce == "amax")
    return out[:, :count]


def path_token_posteriors(logp: torch.Tensor, lengths: torch.Tensor, blank: int = 0) -> torch.Tensor:
    """Per token of each utterance's best CTC path (:func:`best_paths`), the log-posteriors of
    every class at the frames that emit it: the largest over its run of frames.

    Args:
        logp: Log-posteriors ``(B, T, V)`` (:meth:`CTC.log_softmax`).
        lengths: ``(B,)`` frames of each utterance.
        blank: The blank class.

    Returns:
        ``(B, L, V)`` float, ``L`` the longest path; ``-inf`` after each utterance's path.
    """
    logp = logp.float()
    index = path_token_index(logp.argmax(dim=-1), lengths, blank)
    longest = int(index.max()) + 1 if index.numel() else 0
    return token_reduce(logp, index, longest, "amax")


def forced_alignment(logp: torch.Tensor, lengths: torch.Tensor, targets: torch.Tensor,
                     target_lengths: torch.Tensor, blank: int = 0) -> torch.Tensor:
    """The most likely CTC alignment (Viterbi) of each utterance's target sequence, for a
    padded batch at once: per frame, the position of the target token it emits.

    Args:
        logp: Log-posteriors ``(B, T, V)``.
        lengths: ``(B,)`` frames of each utterance.
        targets: ``(B, L)`` int64 CTC classes (no blank), padded with anything past
            ``target_lengths``.
        target_lengths: ``(B,)`` tokens of each utterance.
        blank: The blank class.

    Returns:
        ``(B, T)`` int64: ``k`` for a frame that emits the ``k``-th target token, ``-1`` for a
        blank frame and padding. An utterance no alignment fits (more tokens, repeats
        counted, than frames) has its frames split evenly among its tokens instead, in order.
    """
    logp = logp.float()
    b, t, _ = logp.shape
    device = logp.device
    lengths = lengths.to(device)
    target_lengths = target_lengths.to(device)
    width = max(targets.size(1), 1)
    states = 2 * width + 1  # blank, y1, blank, y2, ..., blank
    tokens = targets[:, :width].to(device).clamp(min=0)
    if tokens.size(1) < width:
        tokens = torch.nn.functional.pad(tokens, (0, width - tokens.size(1)), value=blank)
    ext = torch.full((b, states), blank, dtype=torch.long, device=device)
    ext[:, 1::2] = tokens
    valid = torch.arange(states, device=device).unsqueeze(0) < (2 * target_lengths + 1).unsqueeze(1)
    skip = torch.zeros_like(valid)
    skip[:, 2:] = (ext[:, 2:] != blank) & (ext[:, 2:] != ext[:, :-2])
    emit = logp.gather(2, ext.unsqueeze(1).expand(b, t, states))  # (B, T, S)
    neg = float("-inf")
    score = torch.full((b, states), neg, device=device)
    score[:, 0] = emit[:, 0, 0]
    score[:, 1] = torch.where(target_lengths > 0, emit[:, 0, 1], torch.full_like(emit[:, 0, 1], neg))
    moves = torch.zeros((t, b, states), dtype=torch.uint8, device=device)  # 0 stay, 1 from s-1, 2 from s-2
    for step in range(1, t):
        one = torch.nn.functional.pad(score[:, :-1], (1, 0), value=neg)
        two = torch.nn.functional.pad(score[:, :-2], (2, 0), value=neg).masked_fill(~skip, neg)
        best, move = torch.stack([score, one, two], dim=-1).max(dim=-1)
        new = (best + emit[:, step]).masked_fill(~valid, neg)
        active = (step < lengths).unsqueeze(1)
        score = torch.where(active, new, score)
        moves[step] = torch.where(active, move, torch.zeros_like(move)).to(torch.uint8)
    last = 2 * target_lengths  # the final blank; or the last token
    end_blank = score.gather(1, last.unsqueeze(1)).squeeze(1)
    end_token = score.gather(1, (last - 1).clamp(min=0).unsqueeze(1)).squeeze(1)
    state = torch.where((end_token > end_blank) & (target_lengths > 0), last - 1, last)
    feasible = torch.maximum(end_blank, end_token) > neg
    path = torch.empty((b, t), dtype=torch.long, device=device)
    rows = torch.arange(b, device=device)
    for step in range(t - 1, -1, -1):
        path[:, step] = state
        state = state - moves[step, rows, state].long()
    index = torch.where(path % 2 == 1, (path - 1) // 2, torch.full_like(path, -1))
    frames = torch.arange(t, device=device).unsqueeze(0)
    even = (frames * target_lengths.unsqueeze(1)) // lengths.clamp(min=1).unsqueeze(1)
    index = torch.where(feasible.unsqueeze(1), index, even)
    return index.masked_fill(frames >= lengths.unsqueeze(1), -1)


def sequence_log_likelihood(logp: torch.Tensor, lengths: torch.Tensor, hypotheses: List[List[int]],
                            blank: int = 0, utterances: Optional[torch.Tensor] = None) -> torch.Tensor:
    """CTC log-likelihood ``log p(y | x)`` of whole label sequences (every alignment summed).

    Args:
        logp: Log-posteriors ``(B, T, V)`` (:meth:`CTC.log_softmax`).
        lengths: ``(B,)`` frames of each utterance.
        hypotheses: ``N`` label sequences (CTC classes, no blank); hypothesis ``i`` is scored
            on utterance ``i % B`` (``N`` a multiple of ``B``: several candidates per
            utterance, candidate-major).
        blank: The blank class.
        utterances: ``(N,)`` long: hypothesis ``i`` is scored on utterance ``utterances[i]``
            instead (any number per utterance).

    Returns:
        ``(N,)`` float32; ``-inf`` for a sequence no alignment of its utterance can emit
        (more labels, repeats counted, than frames).
    """
    b = logp.size(0)
    n = len(hypotheses)
    if utterances is None:
        if n % max(b, 1):
            raise ValueError(f"{n} hypotheses for {b} utterances: give the same number of candidates for each")
        utterances = torch.arange(n) % max(b, 1)
    elif utterances.numel() != n:
        raise ValueError(f"{n} hypotheses, {utterances.numel()} utterance indices")
    if any(blank in h for h in hypotheses):
        raise ValueError(f"a hypothesis holds the blank class {blank}")
    width = max((len(h) for h in hypotheses), default=1) or 1
    padded = [[*h] + [1] * (width - len(h)) for h in hypotheses]  # the padding beyond each length is not read
    targets = torch.tensor(padded, dtype=torch.long).view(n, width)
    target_lengths = torch.tensor([len(h) for h in hypotheses], dtype=torch.long)
    rows = utterances.to(logp.device)
    frames = logp.float().transpose(0, 1).index_select(1, rows)  # (T, N, V)
    nll = torch.nn.functional.ctc_loss(frames, targets.to(logp.device), lengths.long().to(logp.device)[rows],
                                       target_lengths.to(logp.device), blank=blank, reduction="none",
                                       zero_infinity=False)
    return -nll
