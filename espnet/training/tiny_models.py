"""Tiny models on a small generated corpus, trained as ``train.py`` trains, so that the
tutorials and demos run offline in about a minute on a CPU. Real work uses your own data
(``preparation.prepare_dataset``) and sizes."""

import glob
import os
import time
from typing import Dict, List

#: A toy Conformer size (adim 32, one block): applies to every model.
TINY_ENCODER = ["--adim", "32", "--aheads", "2", "--eunits", "64", "--elayers", "1"]
#: A toy model size for the ResNet frontends and the Transformer decoder: TINY_ENCODER, one decoder layer,
#: ResNet width 8 (flags of components a model does not have are refused, so HF models take TINY_ENCODER).
TINY_MODEL = TINY_ENCODER + ["--dunits", "64", "--dlayers", "1", "--resnet-width", "8"]

#: Encoder flags per modality (the input streams decide the task).
ENCODER_FLAGS: Dict[str, List[str]] = {
    "audio": ["--audio-encoder", "resnet1d"],
    "video": ["--vision-encoder", "resnet"],
    "audiovisual": ["--vision-encoder", "resnet", "--audio-encoder", "resnet1d", "--fusion-type", "gated"],
}


def make_corpus(out_dir: str, num_utts: int = 40, num_speakers: int = 5, seed: int = 0) -> Dict[str, str]:
    """The generated GRID-style corpus (``preparation.synthetic_av``) in ``out_dir``; an
    existing one is reused. Returns its paths (``root``, ``train``, ``val``, ``test``,
    ``sp_model_path``, ``dict_path``)."""
    from preparation.synthetic_av import generate

    names = {"root": out_dir, "train": "labels/train.csv", "val": "labels/val.csv", "test": "labels/test.csv",
             "sp_model_path": "spm/synth_unigram.model", "dict_path": "spm/synth_unigram_units.txt"}
    paths = {k: (v if k == "root" else os.path.join(out_dir, v)) for k, v in names.items()}
    if all(os.path.isfile(p) for k, p in paths.items() if k != "root"):
        print(f"reusing the corpus in {out_dir}")
        return paths
    print(f"$ python -m preparation.synthetic_av --out {out_dir} --num-utts {num_utts} --num-speakers {num_speakers} "
          f"--seed {seed}")
    generated = generate(out_dir, num_utts=num_utts, num_speakers=num_speakers, seed=seed, progress=False)
    return {k: generated[k] for k in names}


def train_tiny(corpus: Dict[str, str], exp_dir: str, modality: str, epochs: int = 2,
               extra: List[str] = ()) -> str:
    """Train a tiny ``modality`` model as ``train.py`` does (in this process) and return its
    averaged checkpoint ``model_avg_N.pth`` (an existing one is reused)."""
    run_dir = os.path.join(exp_dir, modality)
    found = sorted(glob.glob(os.path.join(run_dir, "model_avg_*.pth")))
    if found:
        print(f"reusing {found[0]}")
        return found[0]
    argv = ["--exp-dir", exp_dir, "--exp-name", modality, *ENCODER_FLAGS[modality], "--root-dir", corpus["root"],
            "--train-file", "train.csv", "--val-file", "val.csv", "--sp-model-path", corpus["sp_model_path"],
            "--dict-path", corpus["dict_path"], *TINY_MODEL, "--max-epochs", str(epochs), "--warmup-epochs", "1",
            "--lr", "2e-3", "--ctc-weight", "0.3", "--max-frames", "400", "--num-workers", "0", *extra]
    print("$ python train.py " + " ".join(argv), flush=True)
    from espnet.training import train_cli as train

    start = time.perf_counter()
    if train.main(argv) != 0:
        raise SystemExit(f"train.py failed for the {modality} model (see above)")
    found = sorted(glob.glob(os.path.join(run_dir, "model_avg_*.pth")))
    if not found:
        raise SystemExit(f"train.py wrote no model_avg_*.pth in {run_dir}")
    print(f"trained the {modality} model in {time.perf_counter() - start:.1f} s: {found[0]}", flush=True)
    return found[0]
