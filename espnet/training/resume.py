"""Checks of ``train.py --ckpt-path`` before any work starts: the file must be a resumable
Lightning checkpoint (not a weights-only model such as ``model_avg_N.pth``) of the model
the flags build."""

from typing import Dict

import torch

from espnet.training.checkpoints import _safe_load, check_state, strip_lightning_prefix

LIGHTNING_VERSION_KEY = "pytorch-lightning_version"


def read_resume_checkpoint(path: str) -> Dict[str, torch.Tensor]:
    """The model weights (keys without Lightning's ``model.`` prefix) of the Lightning
    checkpoint ``path`` given as ``--ckpt-path``.

    Raises:
        ValueError: one line starting ``--ckpt-path PATH:`` when the file is no PyTorch
            checkpoint, is unsafe to load, or holds weights only (a plain state dict, an
            export) rather than Lightning's training state.
    """
    try:
        obj = _safe_load(path)
    except ValueError as err:  # its message starts with the path
        raise ValueError(f"--ckpt-path {err}") from err
    weights_only = ("a weights-only model, not a resumable Lightning checkpoint (it has no optimiser, schedule or "
                    f"epoch to resume); to start a new run from its weights use --pretrained-model-path {path}")
    if not isinstance(obj, dict):
        raise ValueError(f"--ckpt-path {path}: not a Lightning checkpoint (it holds a {type(obj).__name__})")
    if "state_dict" not in obj:
        if obj and all(isinstance(v, torch.Tensor) for v in obj.values()) or "model_state_dict" in obj:
            raise ValueError(f"--ckpt-path {path}: {weights_only}")
        raise ValueError(f"--ckpt-path {path}: not a Lightning checkpoint (no 'state_dict' entry)")
    if LIGHTNING_VERSION_KEY not in obj or "optimizer_states" not in obj:
        raise ValueError(f"--ckpt-path {path}: {weights_only}")
    if not isinstance(obj["state_dict"], dict):
        raise ValueError(f"--ckpt-path {path}: its 'state_dict' entry is a {type(obj['state_dict']).__name__}, "
                         "not a dictionary of tensors")
    return strip_lightning_prefix(obj["state_dict"], f"--ckpt-path {path}")


def check_resume_matches(model: torch.nn.Module, state: Dict[str, torch.Tensor], path: str) -> None:
    """``ValueError`` (one line: how many keys are missing / unexpected / of another shape,
    with the first of each) when ``state`` (from :func:`read_resume_checkpoint`) is not a
    checkpoint of ``model``, the model the flags describe."""
    check_state(model, state, f"--ckpt-path {path}")
