"""SentencePiece tokenisation with the Auto-AVSR units list."""

import hashlib
import os
from typing import List, Sequence, Union

import torch


class TextTransform:
    """Text <-> token ids.

    Token list = ``<blank>`` + the units of ``dict_path`` in file order + ``<eos>``; the
    id of a unit is the number written next to it (1..N), so ids match legacy models.

    Args:
        sp_model_path: SentencePiece ``.model`` file.
        dict_path: Units file, one ``<piece> <id>`` per line.
    """

    def __init__(self, sp_model_path: str, dict_path: str) -> None:
        import sentencepiece

        for flag, path in (("--sp-model-path", sp_model_path), ("--dict-path", dict_path)):
            if not path or not os.path.isfile(path):
                raise FileNotFoundError(f"{flag}: file not found: {path}")
        self.sp_model_path, self.dict_path = sp_model_path, dict_path
        self.spm = sentencepiece.SentencePieceProcessor(model_file=sp_model_path)
        self.piece_to_id = {}
        units: List[str] = []
        with open(dict_path, encoding="utf-8-sig") as handle:  # a byte-order mark is not part of a piece
            for line_no, line in enumerate(handle, 1):
                parts = line.split()
                if not parts:
                    continue
                if len(parts) != 2 or not parts[1].isdigit():
                    raise ValueError(f"{dict_path}:{line_no}: expected '<piece> <id>', got {line.rstrip()!r}")
                if int(parts[1]) != len(units) + 1:
                    raise ValueError(f"{dict_path}:{line_no}: ids must be 1..N in file order, got {parts[1]}")
                units.append(parts[0])
                self.piece_to_id[parts[0]] = int(parts[1])
        if "<unk>" not in self.piece_to_id:
            raise ValueError(f"{dict_path}: the units list has no <unk> entry")
        self.token_list = ["<blank>"] + units + ["<eos>"]
        self.odim = len(self.token_list)
        self.eos = self.odim - 1
        self.ignore_id = -1

    @property
    def fingerprint(self) -> str:
        """``sha256:<hex>`` of what decides the meaning of the ids: the units list (id -> piece)
        and the SentencePiece model's pieces in order. Two tokenizers with the same
        fingerprint turn ids into the same text, whatever their file names."""
        digest = hashlib.sha256()
        for piece in self.token_list:
            digest.update(piece.encode("utf8") + b"\n")
        digest.update(b"\0")
        for i in range(self.spm.get_piece_size()):
            digest.update(self.spm.id_to_piece(i).encode("utf8") + b"\n")
        return "sha256:" + digest.hexdigest()

    def tokenize(self, text: str) -> torch.Tensor:
        """Upper-cased ``text`` -> ids ``(L,)`` (unknown pieces map to ``<unk>``)."""
        pieces = self.spm.encode(text.upper(), out_type=str)
        unk = self.piece_to_id["<unk>"]
        return torch.tensor([self.piece_to_id.get(p, unk) for p in pieces], dtype=torch.long)

    def post_process(self, token_ids: Union[torch.Tensor, Sequence[int]]) -> str:
        """Ids -> text; drops padding (-1), ``<blank>`` and ``<eos>``."""
        ids = torch.as_tensor(token_ids).tolist()
        pieces = [self.token_list[i] for i in ids if 0 < i < self.eos]
        return "".join(pieces).replace("\u2581", " ").strip()
