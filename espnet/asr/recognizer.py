"""Decoding utterances with the model's decoder (joint CTC/attention beam search or a pretrained
decoder's generate), one utterance or many at once."""

from collections import defaultdict
from typing import Dict, List, Sequence, Tuple

import torch

from datamodule.label_list import STREAMS
from espnet.nets.beam_search import BatchBeamSearch
from espnet.nets.pytorch_backend.e2e_asr_conformer import E2E
from espnet.nets.pytorch_backend.decoder.base_decoder import DecodeOptions, Decoded

Item = Dict[str, torch.Tensor]


def build_beam_search(model: E2E, beam_size: int = 40, ctc_weight: float = 0.1,
                      penalty: float = 0.0) -> BatchBeamSearch:
    """The joint CTC/attention search of a model with the Transformer decoder (what its
    ``decode`` runs; for tests and benchmarks that drive the search directly)."""
    return model.decoder.beam_search(model.ctc, DecodeOptions(beam_size=beam_size, ctc_weight=ctc_weight,
                                                              penalty=penalty))


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
    not padding-invariant). The encoder then encodes the padded batch with padded frames
    masked everywhere, the Conformer's convolutions included
    (:meth:`~espnet.nets.pytorch_backend.encoder.base_encoder.BaseEncoder.forward_padding_invariant`).
    """
    if not items:
        raise ValueError("no utterance to encode")
    groups: Dict[Tuple[int, ...], List[int]] = defaultdict(list)
    for i, item in enumerate(items):
        # an audio-visual utterance may lack a stream: such utterances group apart
        groups[tuple((key, item[key].size(0)) for key in STREAMS if key in item)].append(i)
    features: List[torch.Tensor] = [torch.empty(0)] * len(items)
    for members in groups.values():
        feats, lengths = model.fuse_frontends(stack_equal([items[i] for i in members]))
        for row, i in enumerate(members):
            features[i] = feats[row, : int(lengths[row])]
    return model.encoder.forward_padding_invariant(*pad_frames(features))


@torch.no_grad()
def recognize_batch(model: E2E, items: Sequence[Item], options: DecodeOptions) -> List[Decoded]:
    """Best hypothesis of each unbatched utterance, encoded and decoded together by the
    model's decoder (its one ``decode`` interface); each equals what the utterance gets
    alone (scores up to float rounding)."""
    memory, lengths = encode_utterances(model, items)
    return model.decoder.decode(memory, lengths, model.ctc, options)


def recognize(model: E2E, item: Item, options: DecodeOptions) -> Decoded:
    """Best hypothesis for one utterance (its ``video`` and/or ``audio``), decoded alone."""
    return recognize_batch(model, [item], options)[0]


def transcribe(model: E2E, items: Sequence[Item], options: DecodeOptions, sentencepiece=None) -> List[str]:
    """Texts of unbatched utterances (``sentencepiece``: the SentencePiece tokenizer, needed by
    the Transformer decoder)."""
    return [model.decoder.ids_to_text(hyp.token_ids, sentencepiece) for hyp in recognize_batch(model, items, options)]
