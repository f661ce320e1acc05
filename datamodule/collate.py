"""Padding collate that keeps the true length of every stream."""

from typing import Dict, List

import torch

PAD_VALUES = {"target": -1}


def collate_pad(batch: List[Dict[str, object]]) -> Dict[str, torch.Tensor]:
    """Pad each tensor field along its first axis.

    ``video`` -> ``videos (B, T, 1, H, W)`` + ``video_lengths``; ``audio`` -> ``audios
    (B, S, 1)`` + ``audio_lengths``; ``target`` -> ``targets (B, L)`` padded with -1 +
    ``target_lengths``; ``idx`` -> ``idxs (B,)``; ``text`` (str or ``None``) -> ``texts`` and
    ``path`` -> ``paths``, lists of B entries.
    """
    out: Dict[str, torch.Tensor] = {}
    for key in batch[0]:
        values = [item[key] for item in batch]
        if key == "idx":
            out["idxs"] = torch.tensor(values, dtype=torch.long)
            continue
        if key in ("text", "path"):
            out[key + "s"] = list(values)
            continue
        lengths = torch.tensor([v.size(0) for v in values], dtype=torch.long)
        padded = values[0].new_full((len(values), int(lengths.max()), *values[0].shape[1:]), PAD_VALUES.get(key, 0))
        for i, v in enumerate(values):
            padded[i, : v.size(0)] = v
        out[key + "s"] = padded
        out[key + "_lengths"] = lengths
    return out
