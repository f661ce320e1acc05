"""Label CSVs in the Auto-AVSR format.

One utterance per line: ``dataset,rel_path,input_length,token_ids[,transcript]`` where
``token_ids`` are space-separated SentencePiece ids, ``input_length`` counts 25 Hz frames
(video frames, or audio samples / 640) and the optional transcript may contain commas.

An utterance that lacks one of its streams marks it after the path: ``rel_path|missing=video``
(the ``.wav`` beside ``rel_path`` is all there is; the ``.mp4`` need not exist) or
``rel_path|missing=audio`` (no ``.wav``). Audio-visual models decode such an utterance from the
other stream (a learned embedding stands in for the missing one); ``input_length`` then counts
the frames of the stream that is there.
"""

import os
from dataclasses import dataclass
from typing import AbstractSet, Iterator, List, Optional, Tuple

import torch


@dataclass
class Utterance:
    dataset: str
    rel_path: str
    input_length: int
    token_ids: torch.Tensor
    transcript: Optional[str] = None
    line_no: int = 0
    missing: Optional[str] = None  # "video" or "audio": the stream the line marks as missing


STREAMS = ("video", "audio")
MISSING_MARK = "|missing="


def split_missing(rel_path: str, where: str) -> Tuple[str, Optional[str]]:
    """``rel_path|missing=video`` -> ``(rel_path, "video")``; an unmarked path -> ``(rel_path, None)``."""
    if MISSING_MARK not in rel_path:
        if "|" in rel_path:
            raise ValueError(f"{where}: a '|' in rel_path {rel_path!r} must be a '{MISSING_MARK}video' or "
                             f"'{MISSING_MARK}audio' mark")
        return rel_path, None
    path, stream = rel_path.split(MISSING_MARK, 1)
    if stream not in STREAMS or not path:
        raise ValueError(f"{where}: {rel_path!r}: the mark must be '<path>{MISSING_MARK}video' or "
                         f"'<path>{MISSING_MARK}audio'")
    return path, stream


def iter_label_lines(path: str) -> Iterator[Tuple[int, str]]:
    """``(1-based line number, line)`` of every non-blank line of a label CSV (a UTF-8
    byte-order mark at the start, as some editors write, is not part of the first line)."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"label list not found: {path}")
    with open(path, encoding="utf-8-sig") as handle:
        for line_no, line in enumerate(handle, 1):
            line = line.rstrip("\n\r")
            if line.strip():
                yield line_no, line


def parse_label_line(line: str, where: str, line_no: int = 0) -> Utterance:
    """One CSV line -> :class:`Utterance`; a malformed line is a ``ValueError`` starting with
    ``where`` (``FILE:LINE``)."""
    parts = line.split(",", 4)
    if len(parts) < 4:
        raise ValueError(
            f"{where}: expected 'dataset,rel_path,input_length,token_ids[,transcript]', "
            f"got {len(parts)} field(s): {line!r}"
        )
    dataset, rel_path, length, ids = parts[:4]
    rel_path, missing = split_missing(rel_path, where)
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
    return Utterance(dataset, rel_path, input_length, torch.tensor(token_ids), transcript, line_no, missing)


def read_label_list(path: str, skip_lines: AbstractSet[int] = frozenset()) -> List[Utterance]:
    """Parse a label CSV; errors name the file and the 1-based line number. Lines whose
    numbers are in ``skip_lines`` (the pre-flight check's invalid lines under
    ``--skip-invalid``) are left out unread."""
    items = [parse_label_line(line, f"{path}:{line_no}", line_no)
             for line_no, line in iter_label_lines(path) if line_no not in skip_lines]
    if not items:
        raise ValueError(f"{path}: the label list is empty" + (" after leaving out the invalid lines" if skip_lines else ""))
    return items


def format_label_line(dataset: str, rel_path: str, input_length: int, token_ids, transcript: Optional[str] = None,
                      missing: Optional[str] = None) -> str:
    """One CSV line (without newline) in the format :func:`read_label_list` reads;
    ``missing`` (``video`` / ``audio``) marks a stream the utterance lacks."""
    if missing is not None and missing not in STREAMS:
        raise ValueError(f"missing must be 'video' or 'audio', got {missing!r}")
    path = rel_path + (MISSING_MARK + missing if missing else "")
    fields = [dataset, path, str(int(input_length)), " ".join(str(int(t)) for t in token_ids)]
    if transcript is not None:
        fields.append(transcript)
    return ",".join(fields)
