"""Padding collate that keeps the true length of every stream."""

from typing import Dict, List

import torch

from datamodule.label_list import STREAMS

PAD_VALUES = {"target": -1}


def collate_pad(batch: List[Dict[str, object]]) -> Dict[str, torch.Tensor]:
    """Pad each tensor field along its first axis.

    ``video`` -> ``videos (B, T, 1, H, W)`` + ``video_lengths``; ``audio`` -> ``audios
    (B, S, 1)`` + ``audio_lengths``; ``target`` -> ``targets (B, L)`` padded with -1 +
    ``target_lengths``; ``idx`` -> ``idxs (B,)``; ``text`` (str or ``None``) -> ``texts`` and
    ``path`` -> ``paths``, lists of B entries.

    Items may lack a stream (an audio-visual utterance without its video or audio): its rows
    are then zero with length 0, and ``video_present`` / ``audio_present`` ``(B,)`` bool say
    which utterances have the stream (only when some lack it; a stream no item has is left
    out of the batch).
    """
    keys = list(batch[0])
    keys += [k for k in STREAMS if k not in keys and any(k in item for item in batch)]
    out: Dict[str, torch.Tensor] = {}
    for key in keys:
        if key == "idx":
            out["idxs"] = torch.tensor([item[key] for item in batch], dtype=torch.long)
            continue
        if key in ("text", "path"):
            out[key + "s"] = [item[key] for item in batch]
            continue
        values = [item.get(key) for item in batch]
        first = next(v for v in values if v is not None)
        lengths = torch.tensor([v.size(0) if v is not None else 0 for v in values], dtype=torch.long)
        padded = first.new_full((len(values), int(lengths.max()), *first.shape[1:]), PAD_VALUES.get(key, 0))
        for i, v in enumerate(values):
            if v is not None:
                padded[i, : v.size(0)] = v
        out[key + "s"] = padded
        out[key + "_lengths"] = lengths
        if key in STREAMS and any(v is None for v in values):
            out[key + "_present"] = lengths > 0
    return out
