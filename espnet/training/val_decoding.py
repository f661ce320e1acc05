"""Decoding validation (``--val-wer-every``): greedy transcripts of a padded validation batch."""

from typing import Any, Callable, Dict, List, Optional, Tuple

import torch

from datamodule.text_transform import TextTransform
from espnet.asr.recognizer import build_beam_search, recognize, recognize_text
from espnet.nets.pytorch_backend.e2e_asr_conformer import E2E

STREAM_KEYS = (("video", "videos"), ("audio", "audios"))


def batch_inputs(batch: Dict[str, Any]) -> Dict[str, torch.Tensor]:
    """Model inputs (``video``/``audio`` + lengths) of a collated batch."""
    inputs = {}
    for key, batched in STREAM_KEYS:
        if batched in batch:
            inputs[key], inputs[f"{key}_lengths"] = batch[batched], batch[f"{key}_lengths"]
    return inputs


@torch.no_grad()
def decode_batch(model: E2E, batch: Dict[str, Any], text_transform: Optional[TextTransform],
                 references: Callable[[Dict[str, Any]], List[str]], ctc_weight: float,
                 max_new_tokens: int) -> Tuple[List[str], List[str]]:
    """References and beam-1 hypotheses of ``batch``.

    A SentencePiece decoder decodes each utterance alone, unpadded (joint CTC/attention
    search with ``ctc_weight``, as ``eval.py``), and its references are the token ids'
    text; a decoder with its own tokenizer generates for the whole batch and its references
    are ``references(batch)`` (the transcripts).
    """
    if getattr(model, "uses_text", False):
        return references(batch), recognize_text(model, batch_inputs(batch), beam_size=1,
                                                 max_new_tokens=max_new_tokens)
    if text_transform is None:
        raise ValueError("--val-wer-every with a SentencePiece decoder needs --sp-model-path and --dict-path")
    search = build_beam_search(model, beam_size=1, ctc_weight=ctc_weight)
    refs, hyps = [], []
    for i in range(batch["targets"].size(0)):
        item = {key: batch[batched][i, : int(batch[f"{key}_lengths"][i])]
                for key, batched in STREAM_KEYS if batched in batch}
        hyp = recognize(model, search, item)
        refs.append(text_transform.post_process(batch["targets"][i]))
        hyps.append(text_transform.post_process(hyp.yseq[1:]))
    return refs, hyps
