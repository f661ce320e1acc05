"""CTC head and loss."""

from typing import List, Tuple

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
    b, t, v = logp.shape
    _, emits, starts = path_frames(logp.argmax(dim=-1), lengths, blank)
    token = torch.cumsum(starts.long(), dim=1) - 1  # the path token each emitting frame belongs to
    longest = int(starts.sum(dim=1).max()) if b else 0
    token = torch.where(emits, token, torch.full_like(token, longest))  # other frames: one slot past the end
    out = logp.new_full((b, longest + 1, v), float("-inf"))
    out.scatter_reduce_(1, token.unsqueeze(-1).expand(b, t, v), logp, reduce="amax")
    return out[:, :longest]


def sequence_log_likelihood(logp: torch.Tensor, lengths: torch.Tensor, hypotheses: List[List[int]],
                            blank: int = 0) -> torch.Tensor:
    """CTC log-likelihood ``log p(y | x)`` of whole label sequences (every alignment summed).

    Args:
        logp: Log-posteriors ``(B, T, V)`` (:meth:`CTC.log_softmax`).
        lengths: ``(B,)`` frames of each utterance.
        hypotheses: ``N`` label sequences (CTC classes, no blank); hypothesis ``i`` is scored
            on utterance ``i % B`` (``N`` a multiple of ``B``: several candidates per
            utterance, candidate-major).
        blank: The blank class.

    Returns:
        ``(N,)`` float32; ``-inf`` for a sequence no alignment of its utterance can emit
        (more labels, repeats counted, than frames).
    """
    b = logp.size(0)
    n = len(hypotheses)
    if n % max(b, 1):
        raise ValueError(f"{n} hypotheses for {b} utterances: give the same number of candidates for each")
    if any(blank in h for h in hypotheses):
        raise ValueError(f"a hypothesis holds the blank class {blank}")
    repeats = n // b if b else 0
    width = max((len(h) for h in hypotheses), default=1) or 1
    padded = [[*h] + [1] * (width - len(h)) for h in hypotheses]  # the padding beyond each length is not read
    targets = torch.tensor(padded, dtype=torch.long).view(n, width)
    target_lengths = torch.tensor([len(h) for h in hypotheses], dtype=torch.long)
    frames = logp.float().transpose(0, 1).repeat(1, repeats, 1)  # (T, N, V), row i = utterance i % B
    nll = torch.nn.functional.ctc_loss(frames, targets.to(logp.device), lengths.long().repeat(repeats),
                                       target_lengths.to(logp.device), blank=blank, reduction="none",
                                       zero_infinity=False)
    return -nll
