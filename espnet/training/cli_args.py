"""Command-line flags shared by ``train.py`` and ``eval.py`` and their resolution into a
model config."""

import argparse
from typing import Any, Dict, Optional

from espnet.nets.pytorch_backend.e2e_asr_conformer import MODALITIES, E2EConfig

# flag name -> E2EConfig field
DIM_FLAGS = {
    "adim": "adim",
    "aheads": "aheads",
    "eunits": "eunits",
    "elayers": "elayers",
    "dunits": "dunits",
    "dlayers": "dlayers",
}


def add_model_args(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("model")
    group.add_argument("--modality", choices=MODALITIES, default=None,
                       help="Input modality: video (3D-ResNet frontend) or audio (1D-ResNet on waveforms).")
    defaults = E2EConfig()
    for flag, field in DIM_FLAGS.items():
        group.add_argument(f"--{flag}", type=int, default=None,
                           help=f"Model size: {field} (default {getattr(defaults, field)}, the Auto-AVSR size).")


def add_tokenizer_args(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("tokenizer")
    group.add_argument("--sp-model-path", type=str, default=None,
                       help="SentencePiece model (e.g. unigram5000.model).")
    group.add_argument("--dict-path", type=str, default=None,
                       help="Units list matching --sp-model-path (one '<piece> <id>' per line).")


def explicit_model_flags(args: argparse.Namespace) -> Dict[str, Any]:
    """Model flags the user actually gave (``None`` means not given)."""
    given = {f: getattr(args, f) for f in DIM_FLAGS if getattr(args, f, None) is not None}
    if getattr(args, "modality", None) is not None:
        given["modality"] = args.modality
    return given


def resolve_model_config(args: argparse.Namespace, odim: int,
                         stored: Optional[Dict[str, Any]] = None,
                         source: str = "checkpoint") -> E2EConfig:
    """Model config from a checkpoint (``stored``) or from flags.

    With a stored config, any model flag that disagrees with it is an error naming both
    values. Without one, ``--modality`` is required and unspecified sizes take the legacy
    Auto-AVSR values.
    """
    given = explicit_model_flags(args)
    if stored is not None:
        config = E2EConfig.from_dict(dict(stored))
        for flag, value in given.items():
            have = getattr(config, DIM_FLAGS.get(flag, flag))
            if have != value:
                raise ValueError(f"--{flag} {value} contradicts the {source}, which was trained with {flag}={have}")
        if config.odim != odim:
            raise ValueError(f"the tokenizer has {odim} tokens but the {source} model has odim {config.odim}")
        return config
    if "modality" not in given:
        raise ValueError("--modality is required (video or audio)")
    values = {DIM_FLAGS.get(k, k): v for k, v in given.items()}
    return E2EConfig(odim=odim, **values)
