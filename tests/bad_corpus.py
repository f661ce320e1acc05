"""Broken variants of the toy corpus, tiny models and command lines for the tests of bad
inputs, faults, resuming and multi-process training."""

import os
import shutil
from typing import List, Sequence

import torch

from conftest import TINY_DIMS

AUDIO_MODEL = ["--audio-encoder", "resnet1d", "--resnet-width", "8"]


class BadCorpus:
    """A dataset root whose ``toy/`` is the (shared, read-only) toy corpus and whose
    ``bad/`` holds copies of its clips to damage; label lists go to ``labels/``."""

    def __init__(self, toy: dict, root: str) -> None:
        self.toy = toy
        self.root = root
        os.makedirs(os.path.join(root, "labels"), exist_ok=True)
        os.makedirs(os.path.join(root, "bad"), exist_ok=True)
        os.symlink(os.path.join(toy["root"], "toy"), os.path.join(root, "toy"))
        self.lines = {split: self._read(toy[split]) for split in ("train", "val", "test")}
        for split, lines in self.lines.items():
            self.write(f"{split}.csv", lines)

    @staticmethod
    def _read(path: str) -> List[str]:
        with open(path, encoding="utf8") as handle:
            return [line.rstrip("\n") for line in handle if line.strip()]

    def write(self, name: str, lines: Sequence[str]) -> str:
        """Write ``labels/name``; returns ``name`` (what ``--train-file`` etc. take)."""
        with open(os.path.join(self.root, "labels", name), "w", encoding="utf8") as handle:
            handle.write("".join(line + "\n" for line in lines))
        return name

    def label_path(self, name: str) -> str:
        return os.path.join(self.root, "labels", name)

    def copy_clip(self, line: str, name: str) -> str:
        """Copy the media of ``line`` to ``bad/name.{mp4,wav}``; returns the line pointing there."""
        dataset, rel, rest = line.split(",", 2)
        src = os.path.join(self.toy["root"], dataset, rel)
        for ext in (".mp4", ".wav"):
            shutil.copy(src[:-4] + ext, os.path.join(self.root, "bad", name + ext))
        return f"bad,{name}.mp4,{rest}"

    def media(self, name: str, ext: str) -> str:
        return os.path.join(self.root, "bad", name + ext)

    def odim(self) -> int:
        from datamodule.text_transform import TextTransform

        return TextTransform(self.toy["sp_model_path"], self.toy["dict_path"]).odim

    def text_of(self, token_ids: Sequence[int]) -> str:
        """The text the tokenizer reads in ``token_ids`` (a transcript that matches them)."""
        from datamodule.text_transform import TextTransform

        return TextTransform(self.toy["sp_model_path"], self.toy["dict_path"]).post_process(list(token_ids))

    @staticmethod
    def with_token(line: str, token: int) -> str:
        """``line`` with ``token`` appended to its token ids."""
        dataset, rel, length, ids, rest = line.split(",", 4)
        return ",".join([dataset, rel, length, f"{ids} {token}", rest])

    def tokenizer_args(self) -> List[str]:
        return ["--sp-model-path", self.toy["sp_model_path"], "--dict-path", self.toy["dict_path"]]


def train_args(corpus: BadCorpus, exp_dir: str, train_file: str, *extra: str, model: Sequence[str] = AUDIO_MODEL,
               epochs: int = 1, workers: int = 0) -> List[str]:
    """``train.py`` arguments for a tiny model on ``corpus`` (float32 on every machine: ``--precision
    32``, which ``extra`` may override)."""
    return ["--precision", "32", "--exp-dir", exp_dir, "--exp-name", "run", "--root-dir", corpus.root,
            "--train-file", train_file,
            *corpus.tokenizer_args(), *model, *TINY_DIMS, "--max-epochs", str(epochs), "--warmup-epochs", "1",
            "--max-frames", "300", "--num-workers", str(workers), *extra]


def write_untrained_model(corpus: BadCorpus, path: str, modality: str = "audio") -> str:
    """An untrained tiny model as ``model_avg_*.pth`` + sidecar (what ``eval.py`` reads)."""
    from espnet.nets.pytorch_backend.e2e_asr_conformer import E2E
    from flag_config import model_config
    from espnet.training.checkpoints import write_sidecar

    odim = corpus.odim()
    sizes = dict(zip(TINY_DIMS[::2], TINY_DIMS[1::2]))
    config = model_config(odim=odim, vision_encoder="resnet" if modality != "audio" else None,
                         audio_encoder="resnet1d" if modality != "video" else None, resnet_width=8,
                         **{k.lstrip("-"): int(v) for k, v in sizes.items()})
    torch.manual_seed(0)
    torch.save(E2E(config).state_dict(), path)
    write_sidecar(path, {"model_config": config.to_dict(), "sp_model_path": corpus.toy["sp_model_path"],
                         "dict_path": corpus.toy["dict_path"]})
    return path


def write_float_wav(path: str, samples: torch.Tensor, sample_rate: int = 16000) -> None:
    """A mono 32-bit float wav (format 3) of ``samples`` as they are, NaN included (the
    project's own writer stores 16-bit PCM, which cannot hold NaN)."""
    import struct

    data = samples.reshape(-1).to(torch.float32).numpy().tobytes()
    header = struct.pack("<4sI4s4sIHHIIHH4sI", b"RIFF", 36 + len(data), b"WAVE", b"fmt ", 16, 3, 1, sample_rate,
                         4 * sample_rate, 4, 32, b"data", len(data))
    with open(path, "wb") as handle:
        handle.write(header + data)
