"""Loading legacy and Lightning checkpoints and export folders safely, and checkpoint averaging."""

import argparse
import glob
import json
import os
import pickle
import re
from typing import Any, Dict, List, Optional, Tuple

import torch

from espnet.training.tokenizer_files import resolve_tokenizer_paths
from espnet.utils.atomic_write import atomic_json_dump, atomic_torch_save

LIGHTNING_PREFIX = "model."
EXPORT_CONFIG, EXPORT_WEIGHTS = "config.json", "model.safetensors"


def _safe_load(path: str) -> Any:
    """``torch.load(weights_only=True)``; the original Auto-AVSR stored its argparse
    ``Namespace`` in ``hyper_parameters``, which is the one class allow-listed here."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"checkpoint not found: {path}")
    not_pytorch = sniff_not_a_checkpoint(path)
    if not_pytorch:
        raise ValueError(f"{path}: not a PyTorch checkpoint ({not_pytorch})")
    try:
        with torch.serialization.safe_globals([argparse.Namespace]):
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - arbitrary bytes fail in arbitrary ways (IndexError, EOFError, ...)
        raise checkpoint_load_error(path, err) from err


ZIP_MAGIC = b"PK\x03\x04"  # torch.save's format since PyTorch 1.6
PICKLE_PROTOCOL_2 = 0x80  # the legacy format starts with a pickle (protocol >= 2)


def sniff_not_a_checkpoint(path: str) -> Optional[str]:
    """Why the first bytes of ``path`` show that it is no file ``torch.save`` wrote (``empty
    file``, ``a text file?``, ``neither a zip archive nor a pickle``), or ``None`` when it may
    be one (a zip archive, a legacy pickle or tar file)."""
    with open(path, "rb") as handle:
        head = handle.read(512)
    if not head:
        return "an empty file"
    if head.startswith(ZIP_MAGIC) or head[0] == PICKLE_PROTOCOL_2 or head[257:262] == b"ustar":
        return None
    try:
        text = head.decode("utf8")
    except UnicodeDecodeError as err:
        text = head[: err.start].decode("utf8") if err.start > len(head) - 4 else ""  # a character cut at 512
    if text and all(c.isprintable() or c in "\t\r\n" for c in text):
        return "a text file?"
    return "neither a zip archive nor a pickle"


def checkpoint_load_error(path: str, err: BaseException) -> ValueError:
    """A ``ValueError`` naming ``path`` for a ``torch.load`` failure: a file that weights-only
    loading refuses (it holds Python objects, which could run code when unpickled) is "not a
    safe checkpoint" -- PyTorch's advice to retry with ``weights_only=False`` is left out on
    purpose; anything else is an unreadable (truncated, corrupt, not PyTorch) file."""
    text = str(err)
    if isinstance(err, pickle.UnpicklingError) and "Weights only load failed" in text:
        reasons = [part.strip() for part in text.split("\n\n") if part.strip()
                   and "weights_only" not in part and "Weights only load failed" not in part]
        reason = f" ({reasons[0].splitlines()[0]})" if reasons else ""
        return ValueError(f"{path}: not a safe checkpoint: it holds Python objects that weights-only loading "
                          f"refuses{reason}; use a checkpoint written by train.py, or a plain state dict")
    first = text.strip().splitlines()[0].split(". ")[0] if text.strip() else ""
    return ValueError(f"{path}: not a readable PyTorch checkpoint (damaged or truncated? torch.load failed with "
                      f"{type(err).__name__}{': ' + first if first else ''})")


def strip_lightning_prefix(state_dict: Dict[str, torch.Tensor], path: str) -> Dict[str, torch.Tensor]:
    """Keys ``model.X`` -> ``X`` (the prefix is removed once, at the start only)."""
    out = {}
    for key, value in state_dict.items():
        if not key.startswith(LIGHTNING_PREFIX):
            raise ValueError(f"{path}: unexpected key {key!r} in a Lightning checkpoint (expected 'model.*')")
        out[key[len(LIGHTNING_PREFIX):]] = value
    return out


def sidecar_path(path: str) -> str:
    """``model_avg_10.pth`` -> ``model_avg_10.json`` (config of a plain state-dict file)."""
    return os.path.splitext(path)[0] + ".json"


def write_sidecar(path: str, meta: Dict[str, Any]) -> None:
    """``meta`` as the ``.json`` sidecar of ``path`` (written atomically)."""
    atomic_json_dump(meta, sidecar_path(path))


def save_with_sidecar(state: Dict[str, torch.Tensor], path: str, meta: Optional[Dict[str, Any]]) -> None:
    """A plain state dict at ``path`` and its sidecar, each written beside and renamed into place:
    the sidecar first, so a ``.pth`` under its final name always has its own sidecar."""
    if meta is not None:
        write_sidecar(path, meta)
    atomic_torch_save(state, path)


def load_checkpoint(path: str) -> Tuple[Dict[str, torch.Tensor], Optional[Dict[str, Any]], Dict[str, Any]]:
    """Read a plain state dict (``model_avg_*.pth``), a Lightning ``.ckpt`` or an export
    folder (:func:`load_export_folder`).

    Returns:
        ``(state_dict, model_config or None, hyper_parameters)``; the config is present in
        checkpoints written by this project. Relative tokenizer paths in the
        hyper-parameters are relative to the checkpoint's directory and returned absolute.
    """
    if os.path.isdir(path):
        return load_export_folder(path)
    state, config, meta = _load_file(path)
    return state, config, resolve_tokenizer_paths(meta, os.path.dirname(path))


def _load_file(path: str) -> Tuple[Dict[str, torch.Tensor], Optional[Dict[str, Any]], Dict[str, Any]]:
    obj = _safe_load(path)
    if not isinstance(obj, dict):
        raise ValueError(f"{path}: expected a state dict or a Lightning checkpoint, got {type(obj).__name__}")
    if "state_dict" in obj:
        hparams = obj.get("hyper_parameters") or {}
        if isinstance(hparams, argparse.Namespace):
            hparams = vars(hparams)
        state = strip_lightning_prefix(obj["state_dict"], path)
        config = obj.get("model_config") or dict(hparams).get("model_config")
        return state, config, dict(hparams)
    if "model_state_dict" in obj and isinstance(obj["model_state_dict"], dict):
        return obj["model_state_dict"], obj.get("model_config"), {}
    if not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ValueError(f"{path}: not a state dict (non-tensor values) and no 'state_dict' entry")
    meta: Dict[str, Any] = {}
    if os.path.isfile(sidecar_path(path)):
        with open(sidecar_path(path), encoding="utf8") as handle:
            meta = json.load(handle)
    return obj, meta.get("model_config"), meta


def load_export_folder(path: str) -> Tuple[Dict[str, torch.Tensor], Optional[Dict[str, Any]], Dict[str, Any]]:
    """Read a Hugging Face-style folder written by ``python -m espnet.training.export
    --hf-dir``: ``config.json`` (model config, tokenizer file names) and ``model.safetensors``
    (weights; read with safetensors, never unpickled)."""
    config_path, weights_path = os.path.join(path, EXPORT_CONFIG), os.path.join(path, EXPORT_WEIGHTS)
    missing = [name for name, p in ((EXPORT_CONFIG, config_path), (EXPORT_WEIGHTS, weights_path)) if not os.path.isfile(p)]
    if missing:
        raise FileNotFoundError(f"{path} is a directory but not an export folder: it has no {' and no '.join(missing)} "
                                "(pass a checkpoint file, or a folder written by python -m espnet.training.export --hf-dir)")
    try:
        with open(config_path, encoding="utf8") as handle:
            exported = json.load(handle)
    except json.JSONDecodeError as err:
        raise ValueError(f"{config_path}: not valid JSON ({err})") from err
    if not isinstance(exported, dict) or not isinstance(exported.get("model_config"), dict):
        raise ValueError(f"{config_path}: no 'model_config' entry (not written by espnet.training.export --hf-dir)")
    try:
        from safetensors.torch import load_file
    except ImportError:
        raise ImportError("reading model.safetensors needs the safetensors package: pip install safetensors") from None
    try:
        state = load_file(weights_path, device="cpu")
    except Exception as err:  # noqa: BLE001 - safetensors reports a bad header/file in several exception types
        raise ValueError(f"{weights_path}: not a readable safetensors file ({err})") from err
    meta = {key: exported.get("tokenizer", {}).get(key) for key in ("sp_model_path", "dict_path")}
    return state, exported["model_config"], resolve_tokenizer_paths(meta, path)


QUANT_STATE_MARK = ".quant_state.bitsandbytes__"


def quantized_keys(state: Dict[str, torch.Tensor]) -> set:
    """Keys of 4-bit weights and their quantisation state (``X.weight``, ``X.weight.absmax``,
    ``X.weight.quant_map``, ``X.weight.nested_*``, ``X.weight.quant_state.*``)."""
    prefixes = tuple(k[: k.index(QUANT_STATE_MARK)] for k in state if QUANT_STATE_MARK in k)
    if not prefixes:
        return set()
    return {k for k in state if k in prefixes or k.startswith(tuple(p + "." for p in prefixes))}


def average_state_dicts(paths: List[str]) -> Dict[str, torch.Tensor]:
    """Element-wise mean of the model weights of several checkpoints.

    Only trainable-kind tensors are averaged: floating tensors get the mean, BatchNorm
    ``num_batches_tracked`` counters are summed and floor-divided (as the original recipe
    does). Anything else -- 4-bit quantised weights with their quantisation state, other
    integer tensors such as the QLoRA base-weight fingerprint -- is frozen: it must be
    identical in every checkpoint and is copied, never averaged. A checkpoint with NaN/inf
    values is refused (:func:`check_finite`).
    """
    if not paths:
        raise ValueError("no checkpoints to average")
    total: Dict[str, torch.Tensor] = {}
    frozen: set = set()
    for path in paths:
        state, _, _ = load_checkpoint(path)
        check_finite(state, path)
        if not total:
            frozen = quantized_keys(state) | {k for k, v in state.items()
                                              if not v.is_floating_point() and not k.endswith("num_batches_tracked")}
            total = {k: v.clone() for k, v in state.items()}
            continue
        if set(state) != set(total):
            raise ValueError(f"{path}: its keys differ from {paths[0]}; cannot average")
        for key, value in state.items():
            if key in frozen:
                if not torch.equal(value, total[key]):
                    raise ValueError(f"{path}: frozen tensor {key} differs from {paths[0]}; cannot average")
            else:
                total[key] += value
    n = len(paths)
    return {k: (v if k in frozen else v / n if v.is_floating_point() else v // n) for k, v in total.items()}


def check_finite(state: Dict[str, torch.Tensor], path: str) -> None:
    """``ValueError`` naming ``path`` when a floating tensor of ``state`` holds NaN or inf."""
    bad = [k for k, v in state.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]
    if bad:
        raise ValueError(f"{path}: {len(bad)} of {len(state)} tensors hold NaN or inf values (e.g. {bad[0]}); "
                         f"refusing to average it (no model_avg written)")


def epoch_checkpoints(ckpt_dir: str) -> List[str]:
    """``epoch=N.ckpt`` files of a run, ordered by N."""
    found = []
    for path in glob.glob(os.path.join(ckpt_dir, "epoch=*.ckpt")):
        match = re.fullmatch(r"epoch=(\d+)\.ckpt", os.path.basename(path))
        if match:
            found.append((int(match.group(1)), path))
    return [p for _, p in sorted(found)]


def average_last_checkpoints(ckpt_dir: str, max_n: int = 10, meta: Optional[Dict[str, Any]] = None) -> str:
    """Write ``model_avg_N.pth`` (a plain, legacy-loadable state dict) averaging the last
    ``N = min(max_n, #epochs)`` epoch checkpoints, plus ``model_avg_N.json`` with ``meta``
    (model config and tokenizer paths); returns the ``.pth`` path."""
    paths = epoch_checkpoints(ckpt_dir)
    if not paths:
        raise FileNotFoundError(f"no epoch=*.ckpt checkpoints in {ckpt_dir}")
    last = paths[-max_n:]
    out = os.path.join(ckpt_dir, f"model_avg_{len(last)}.pth")
    save_with_sidecar(average_state_dicts(last), out,
                      None if meta is None else {**meta, "averaged": [os.path.basename(p) for p in last]})
    return out


def load_state_checked(model: torch.nn.Module, state: Dict[str, torch.Tensor], source: str) -> None:
    """``model.load_state_dict(state, strict=True)`` after :func:`check_state` (a ``--use-qlora``
    model loads its checkpoint subset, non-strictly once checked)."""
    check_state(model, state, source)
    model.load_state_dict(state, strict=not getattr(model, "qlora_applied", False))


def check_state(model: torch.nn.Module, state: Dict[str, torch.Tensor], source: str) -> None:
    """Check keys and shapes of ``state`` against ``model``, so that a mismatch is reported as
    a ``ValueError`` naming ``source``, the model and what differs.

    A ``--use-qlora`` model expects exactly its checkpoint subset (adapters and new
    modules; the pretrained weights come from ``--*-model-name``), trained on the same
    pretrained weights (fingerprint check)."""
    qlora = bool(getattr(model, "qlora_applied", False))
    if qlora:
        from espnet.nets.pytorch_backend.lora.qlora_manager import check_fingerprint

        expected = model.checkpoint_state_dict()
    else:
        expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    wrong = [f"{k} {tuple(state[k].shape)} vs {tuple(v.shape)}" for k, v in expected.items()
             if k in state and state[k].shape != v.shape]
    if missing or unexpected or wrong:
        config = getattr(model, "config", None)
        described = "the model"
        if config is not None:
            described = config.describe()
        raise ValueError(
            f"{source} does not match {described}: {len(missing)} missing key(s) {missing[:3]}, "
            f"{len(unexpected)} unexpected key(s) {unexpected[:3]}, {len(wrong)} shape mismatch(es) "
            f"(checkpoint vs model) {wrong[:3]}; check the encoder/size flags"
        )
    if qlora:
        check_fingerprint(model, state, source)
