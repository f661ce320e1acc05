"""Label CSVs in the Auto-AVSR format.

One utterance per line: ``dataset,rel_path,input_length,token_ids[,transcript]`` where
``token_ids`` are space-separated SentencePiece ids, ``input_length`` counts 25 Hz frames
(video frames, or audio samples / 640) and the optional transcript may contain commas.
"""

import os
from dataclasses import dataclass
from typing import List, Optional

import torch


@dataclass
class Utterance:
    dataset: str
    rel_path: str
    input_length: int
    token_ids: torch.Tensor
    transcript: Optional[str] = None


def read_label_list(path: str) -> List[Utterance]:
    """Parse a label CSV; errors name the file and the 1-based line number."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"label list not found: {path}")
    items: List[Utterance] = []
    with open(path, encoding="utf8") as handle:
        for line_no, line in enumerate(handle, 1):
            line = line.rstrip("\n\r")
            if not line.strip():
                continue
            parts = line.split(",", 4)
            where = f"{path}:{line_no}"
            if len(parts) < 4:
                raise ValueError(
                    f"{where}: expected 'dataset,rel_path,input_length,token_ids[,transcript]', "
                    f"got {len(parts)} field(s): {line!r}"
                )
            dataset, rel_path, length, ids = parts[:4]
            try:
                input_length = int(length)
            except ValueError:
                raise ValueError(f"{where}: input_length must be an integer, got {length!r}") from None
            if input_length <= 0:
                raise ValueError(f"{where}: input_length must be positive, got {input_length}")
            try:
                token_ids = [int(t) for t in ids.split()]
            except ValueError:
                raise ValueError(f"{where}: token_ids must be space-separated integers, got {ids!r}") from None
            if not token_ids:
                raise ValueError(f"{where}: empty token_ids")
            transcript = parts[4] if len(parts) == 5 else None
            items.append(Utterance(dataset, rel_path, input_length, torch.tensor(token_ids), transcript))
    if not items:
        raise ValueError(f"{path}: the label list is empty")
    return items


def format_label_line(dataset: str, rel_path: str, input_length: int, token_ids, transcript: Optional[str] = None) -> str:
    """One CSV line (without newline) in the format :func:`read_label_list` reads."""
    fields = [dataset, rel_path, str(int(input_length)), " ".join(str(int(t)) for t in token_ids)]
    if transcript is not None:
        fields.append(transcript)
    return ",".join(fields)
