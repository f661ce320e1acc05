"""Decoding utterances with the model's decoder, one utterance or many at once: every decoder
that is a batch scorer (Transformer, LLaMA, Whisper) in the one joint CTC/attention beam search,
a decoder with its own search (``decodes_itself``) by itself."""

import warnings
from collections import defaultdict
from typing import Dict, List, Optional, Sequence, Tuple

import torch

from datamodule.label_list import STREAMS
from espnet.nets.beam_search import BatchBeamSearch, length_limits
from espnet.nets.pytorch_backend.ctc import best_paths
from espnet.nets.pytorch_backend.e2e_asr_conformer import E2E
from espnet.nets.pytorch_backend.decoder.base_decoder import DecodeOptions, Decoded

Item = Dict[str, torch.Tensor]


def decoding_ctc(model: E2E, ctc_weight: float) -> Optional[torch.nn.Module]:
    """The CTC head joint decoding uses with weight ``ctc_weight``: ``None`` for weight 0,
    and (with a warning) for a model whose CTC head was not trained (its training
    ``ctc_weight`` is 0). A head whose classes are not the decoder's vocabulary (blank
    included) cannot score its hypotheses: a ``ValueError``."""
    if ctc_weight == 0.0:
        return None
    if model.ctc_weight == 0.0:
        warnings.warn(f"--ctc-weight {ctc_weight:g}: this model's CTC head was not trained (training --ctc-weight 0); "
                      "decoding with the decoder alone", stacklevel=2)
        return None
    classes, needed = model.ctc.ctc_lo.out_features, model.decoder.ctc_vocab_size
    if classes != needed:
        raise ValueError(f"--ctc-weight {ctc_weight:g}: the CTC head predicts {classes} classes but the decoder's "
                         f"vocabulary needs {needed} (blank included), so it cannot score the decoder's hypotheses; "
                         "decode with --ctc-weight 0")
    return model.ctc


def build_beam_search(model: E2E, beam_size: int = 40, ctc_weight: float = 0.1,
                      penalty: float = 0.0) -> BatchBeamSearch:
    """The joint CTC/attention beam search of any decoder that is a batch scorer: decoder
    weight ``1 - ctc_weight``, CTC prefix scores of the model's CTC head (when it was
    trained, see :func:`decoding_ctc`) on the decoder's pre-beam, length bonus ``penalty``;
    the decoder's own ``sos`` / ``eos`` and vocabulary. Without a positive length bonus, a
    search with an explicit maximum length (a pretrained decoder's ``--max-new-tokens``)
    stops an utterance once no running hypothesis can beat its best finished one."""
    from espnet.nets.scorers.ctc import CTCPrefixScorer
    from espnet.nets.scorers.length_bonus import LengthBonus

    decoder = model.decoder
    if decoder.decodes_itself:
        raise ValueError(f"{type(decoder).__name__} decodes by its own search, not in the beam search")
    ctc = decoding_ctc(model, ctc_weight)
    if ctc is None:
        ctc_weight = 0.0
    vocab = decoder.search_vocab_size
    scorers = {"decoder": decoder, "length_bonus": LengthBonus(vocab)}
    if ctc is not None:
        scorers["ctc"] = CTCPrefixScorer(ctc, decoder.eos, 0, token_offset=decoder.ctc_token_offset, vocab_size=vocab)
    weights = {"decoder": 1.0 - ctc_weight, "ctc": ctc_weight, "length_bonus": penalty}
    return BatchBeamSearch(scorers, weights, beam_size=beam_size, vocab_size=vocab, sos=decoder.sos,
                           eos=decoder.eos, pre_beam_score_key=None if ctc_weight == 1.0 else "decoder",
                           stop_at_best_ended=penalty <= 0.0)


@torch.no_grad()
def ctc_greedy(model: E2E, memory: torch.Tensor, memory_lengths: torch.Tensor) -> List[Decoded]:
    """Best CTC path of each utterance of a padded batch (``memory`` ``(B, T, D)``, lengths
    ``(B,)`` frames): the argmax class of each real frame, repeats merged, blanks (0)
    dropped, as decoder token ids (CTC class minus ``ctc_token_offset``). ``score``: the sum
    of the chosen classes' log-probabilities. The model's CTC head must have been trained."""
    if model.ctc_weight == 0.0:
        raise ValueError("--decode-mode ctc-greedy: this model's CTC head was not trained (training --ctc-weight 0)")
    offset = model.decoder.ctc_token_offset
    return [Decoded([c - offset for c in classes], score)
            for classes, score in best_paths(model.ctc.log_softmax(memory), memory_lengths, model.blank)]


@torch.no_grad()
def decode_memory(model: E2E, memory: torch.Tensor, memory_lengths: torch.Tensor,
                  options: DecodeOptions) -> List[Decoded]:
    """Best hypothesis per utterance of a padded batch of encoder outputs ``(B, T, D)``
    (lengths ``(B,)``): the beam search of :func:`build_beam_search` (each utterance up to
    the decoder's maximum length, see ``BaseDecoder.max_length_ratio``), or the decoder's
    own search for a ``decodes_itself`` decoder; with ``options.mode == "ctc-greedy"`` the
    CTC head's best path (:func:`ctc_greedy`) instead."""
    if options.mode == "ctc-greedy":
        return ctc_greedy(model, memory, memory_lengths)
    decoder = model.decoder
    if decoder.decodes_itself:
        ctc = decoding_ctc(model, options.ctc_weight)
        asks = options.ctc_path_request()
        if ctc is None and (asks or decoder.reads_ctc):  # the path needs the head, whatever its weight
            if model.ctc_weight == 0.0:
                raise ValueError(f"{asks or 'its decoder reads the CTC head'}, but this model's CTC head was not "
                                 "trained (training --ctc-weight 0)")
            ctc = model.ctc
        return decoder.recognize(memory, memory_lengths, ctc, options)
    search = build_beam_search(model, options.beam_size, options.ctc_weight, options.penalty)
    ratio = decoder.max_length_ratio(options)
    best = []
    for i, hyps in enumerate(search.batch_forward(memory, memory_lengths, ratio)):
        if not hyps:
            raise RuntimeError(f"beam search returned no hypothesis for utterance {i} of the batch")
        ids = hyps[0].yseq.tolist()[1:]  # without <sos>
        while ids and ids[-1] == decoder.eos:  # (an eos chosen at the length limit gets a second one)
            ids.pop()
        # a hypothesis that chose its end token takes at most maxlen - 1 tokens before it
        maxlen = length_limits(int(memory_lengths[i]), ratio, 0.0)[0]
        best.append(Decoded(ids, float(hyps[0].score), hit_length_limit=len(ids) >= maxlen))
    return best


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
    """Best hypothesis of each unbatched utterance, encoded and decoded together
    (:func:`decode_memory`); each equals what the utterance gets alone (scores up to float
    rounding)."""
    memory, lengths = encode_utterances(model, items)
    return decode_memory(model, memory, lengths, options)


def recognize(model: E2E, item: Item, options: DecodeOptions) -> Decoded:
    """Best hypothesis for one utterance (its ``video`` and/or ``audio``), decoded alone."""
    return recognize_batch(model, [item], options)[0]


def transcribe(model: E2E, items: Sequence[Item], options: DecodeOptions, sentencepiece=None) -> List[str]:
    """Texts of unbatched utterances (``sentencepiece``: the SentencePiece tokenizer, needed by
    the Transformer decoder)."""
    return [model.decoder.ids_to_text(hyp.token_ids, sentencepiece) for hyp in recognize_batch(model, items, options)]
