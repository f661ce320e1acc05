"""Utterance decoding with joint CTC/attention beam search."""

from typing import Dict, List

import torch

from espnet.nets.beam_search import BatchBeamSearch, Hypothesis
from espnet.nets.pytorch_backend.e2e_asr_conformer import E2E
from espnet.nets.scorers.ctc import CTCPrefixScorer
from espnet.nets.scorers.length_bonus import LengthBonus


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


def batch_of_one(item: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """Unbatched ``video`` ``(T, 1, H, W)`` / ``audio`` ``(S, 1)`` -> model inputs of batch 1."""
    inputs = {}
    for key in STREAMS:
        x = item.get(key)
        if x is not None:
            inputs[key] = x.unsqueeze(0)
            inputs[f"{key}_lengths"] = torch.tensor([x.size(0)], device=x.device)
    return inputs


@torch.no_grad()
def recognize(model: E2E, search: BatchBeamSearch, item: Dict[str, torch.Tensor]) -> Hypothesis:
    """Best hypothesis for one utterance (its ``video`` and/or ``audio``), decoded alone
    (no padding), as the original recipe does."""
    enc, enc_len = model.encode(batch_of_one(item))
    hyps: List[Hypothesis] = search(enc[0, : int(enc_len[0])])
    if not hyps:
        raise RuntimeError("beam search returned no hypothesis")
    return hyps[0]


@torch.no_grad()
def recognize_text(model: E2E, item: Dict[str, torch.Tensor], beam_size: int = 1,
                   max_new_tokens: int = 64) -> List[str]:
    """Texts decoded by a ``uses_text`` decoder (its own ``generate``) for one utterance
    (unbatched ``item``) or a batch (``item`` already holds model inputs with lengths)."""
    inputs = item if any(k.endswith("_lengths") for k in item) else batch_of_one(item)
    enc, enc_len = model.encode(inputs)
    return model.decoder.decode(enc, enc_len, beam_size=beam_size, max_new_tokens=max_new_tokens)
