"""Decoding validation (``--val-wer-every``): greedy transcripts of a padded validation batch."""

from typing import Any, Callable, Dict, List, Optional, Tuple

import torch

from datamodule.text_transform import TextTransform
from espnet.asr.recognizer import DecodeOptions, transcribe
from espnet.nets.pytorch_backend.e2e_asr_conformer import E2E

STREAM_KEYS = (("video", "videos"), ("audio", "audios"))


def batch_inputs(batch: Dict[str, Any]) -> Dict[str, torch.Tensor]:
    """Model inputs (``video``/``audio`` + lengths, and ``*_present`` when some utterances
    lack the stream) of a collated batch."""
    inputs = {}
    for key, batched in STREAM_KEYS:
        if batched in batch:
            inputs[key], inputs[f"{key}_lengths"] = batch[batched], batch[f"{key}_lengths"]
            if f"{key}_present" in batch:
                inputs[f"{key}_present"] = batch[f"{key}_present"]
    return inputs


@torch.no_grad()
def decode_batch(model: E2E, batch: Dict[str, Any], text_transform: Optional[TextTransform],
                 references: Callable[[Dict[str, Any]], List[str]], ctc_weight: float,
                 max_new_tokens: int) -> Tuple[List[str], List[str]]:
    """References (``references(batch)``: transcripts, else the text of the SentencePiece
    ids) and beam-1 hypotheses of ``batch``, decoded as ``eval.py --beam-size 1`` decodes
    them (each utterance unpadded through the frontends, the batch through the model's
    decoder; ``ctc_weight`` for joint CTC/attention decoding)."""
    items = [{key: batch[batched][i, : int(batch[f"{key}_lengths"][i])] for key, batched in STREAM_KEYS
              if batched in batch and int(batch[f"{key}_lengths"][i]) > 0} for i in range(batch["targets"].size(0))]
    options = DecodeOptions(beam_size=1, ctc_weight=ctc_weight, max_new_tokens=max_new_tokens)
    return references(batch), transcribe(model, items, options, text_transform)
