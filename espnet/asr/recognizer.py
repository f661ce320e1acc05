"""Utterance decoding with joint CTC/attention beam search, one utterance or many at once."""

from collections import defaultdict
from typing import Dict, List, Sequence, Tuple, Union

import torch

from espnet.nets.beam_search import BatchBeamSearch, Hypothesis
from espnet.nets.pytorch_backend.e2e_asr_conformer import E2E
from espnet.nets.scorers.ctc import CTCPrefixScorer
from espnet.nets.scorers.length_bonus import LengthBonus

Item = Dict[str, torch.Tensor]


def build_beam_search(
    model: E2E, beam_size: int = 40, ctc_weight: float = 0.1, penalty: float = 0.0
) -> BatchBeamSearch:
    """Auto-AVSR decoding setup: decoder weight ``1 - ctc_weight``, CTC prefix scores on
    the decoder's pre-beam, optional length bonus ``penalty``."""
    if not 0.0 <= ctc_weight <= 1.0:
        raise ValueError(f"--ctc-weight must be in [0, 1], got {ctc_weight}")
    if beam_size < 1:
        raise ValueError(f"--beam-size must be >= 1, got {beam_size}")
    scorers = {
        "decoder": model.decoder,
        "ctc": CTCPrefixScorer(model.ctc, model.eos, model.blank),
        "length_bonus": LengthBonus(model.odim),
    }
    weights = {"decoder": 1.0 - ctc_weight, "ctc": ctc_weight, "length_bonus": penalty}
    return BatchBeamSearch(
        scorers,
        weights,
        beam_size=beam_size,
        vocab_size=model.odim,
        sos=model.sos,
        eos=model.eos,
        pre_beam_score_key=None if ctc_weight == 1.0 else "decoder",
    )


STREAMS = ("video", "audio")


def batch_of_one(item: Item) -> Dict[str, torch.Tensor]:
    """Unbatched ``video`` ``(T, 1, H, W)`` / ``audio`` ``(S, 1)`` -> model inputs of batch 1."""
    inputs = {}
    for key in STREAMS:
        x = item.get(key)
        if x is not None:
            inputs[key] = x.unsqueeze(0)
            inputs[f"{key}_lengths"] = torch.tensor([x.size(0)], device=x.device)
    return inputs


def stack_equal(items: Sequence[Item]) -> Dict[str, torch.Tensor]:
    """Model inputs of a batch of utterances whose streams all have equal lengths (no padding)."""
    inputs = {}
    for key in STREAMS:
        if key in items[0]:
            inputs[key] = torch.stack([item[key] for item in items])
            inputs[f"{key}_lengths"] = torch.full((len(items),), items[0][key].size(0), device=inputs[key].device)
    return inputs


def pad_frames(frames: Sequence[torch.Tensor]) -> Tuple[torch.Tensor, torch.Tensor]:
    """``(T_i, D)`` tensors -> zero-padded ``(B, T, D)`` and lengths ``(B,)``."""
    lengths = torch.tensor([x.size(0) for x in frames], device=frames[0].device)
    return torch.nn.utils.rnn.pad_sequence(list(frames), batch_first=True), lengths


@torch.no_grad()
def encode_utterances(model: E2E, items: Sequence[Item]) -> Tuple[torch.Tensor, torch.Tensor]:
    """Encoder outputs ``(B, T, D)`` (zero after each length) and lengths ``(B,)`` (frames)
    of unbatched utterances (``video`` ``(T, 1, H, W)`` / ``audio`` ``(S, 1)``), each equal
    to the utterance's encoding alone (up to float rounding).

    The frontends (and fusion) see no padding: utterances whose inputs have the same
    length go through them together, the others separately (the legacy audio ResNet is
    not padding-invariant). The Conformer then encodes the padded batch with padded frames
    masked everywhere, its convolutions included
    (:meth:`~espnet.nets.pytorch_backend.encoder.conformer_encoder.ConformerEncoder.forward_padding_invariant`).
    """
    if not items:
        raise ValueError("no utterance to encode")
    groups: Dict[Tuple[int, ...], List[int]] = defaultdict(list)
    for i, item in enumerate(items):
        groups[tuple(item[key].size(0) for key in STREAMS if key in item)].append(i)
    features: List[torch.Tensor] = [torch.empty(0)] * len(items)
    for members in groups.values():
        feats, lengths = model.fuse_frontends(stack_equal([items[i] for i in members]))
        for row, i in enumerate(members):
            features[i] = feats[row, : int(lengths[row])]
    xs, lengths = pad_frames(features)
    if model.encoder is None:
        return xs, lengths
    return model.encoder.forward_padding_invariant(xs, lengths)


@torch.no_grad()
def recognize_batch(model: E2E, search: BatchBeamSearch, items: Sequence[Item]) -> List[Hypothesis]:
    """Best hypothesis of each utterance, decoded together; each equals what
    :func:`recognize` gives for the utterance alone."""
    memory, lengths = encode_utterances(model, items)
    best = []
    for i, hyps in enumerate(search.batch_forward(memory, lengths)):
        if not hyps:
            raise RuntimeError(f"beam search returned no hypothesis for utterance {i} of the batch")
        best.append(hyps[0])
    return best


@torch.no_grad()
def recognize(model: E2E, search: BatchBeamSearch, item: Item) -> Hypothesis:
    """Best hypothesis for one utterance (its ``video`` and/or ``audio``), decoded alone
    (no padding), as the original recipe does."""
    return recognize_batch(model, search, [item])[0]


@torch.no_grad()
def recognize_text(model: E2E, items: Union[Item, Sequence[Item]], beam_size: int = 1,
                   max_new_tokens: int = 64) -> List[str]:
    """Texts decoded by a ``uses_text`` decoder (its own batched ``generate``) for one
    unbatched utterance or a list of them."""
    memory, lengths = encode_utterances(model, [items] if isinstance(items, dict) else items)
    return model.decoder.decode(memory, lengths, beam_size=beam_size, max_new_tokens=max_new_tokens)
