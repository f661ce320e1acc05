"""Export a trained checkpoint as a plain state dict + JSON sidecar, or as a Hugging
Face-style folder (both are what ``eval.py --pretrained-model-path`` loads).

    python -m espnet.training.export --pretrained-model-path exp/run/epoch=9.ckpt --out model.pth
    python -m espnet.training.export --pretrained-model-path exp/run/model_avg_10.pth --merge-lora
    python -m espnet.training.export --pretrained-model-path exp/run/model_avg_10.pth --hf-dir exported/

``--merge-lora`` (for ``--use-qlora`` models): fold the LoRA adapters into the dequantised
pretrained weights and write a full-precision model (``<name>_merged.pth`` by default)
with the key layout of the same model built without ``--use-qlora``; it needs the
pretrained models (``--*-model-name`` recorded in the checkpoint) to be present.

``--hf-dir OUT``: ``OUT/config.json`` (model config, tokenizer file names),
``OUT/model.safetensors`` (the weights; no pickle), the SentencePiece tokenizer files and
``OUT/README.md`` (what it is and how to evaluate it).
"""

import argparse
import json
import os
import shutil
import sys
import tempfile
from typing import Any, Dict, Optional, Tuple

import torch

EXPORT_FORMAT = "avsr-e2e"
EXPORT_FORMAT_VERSION = 1


def _load(path: str):
    """The model of the checkpoint ``path`` (through the model API), its config and the
    tokenizer files it names (absolute)."""
    from espnet.asr.pretrained import build_model, resolve_pretrained

    resolved = resolve_pretrained(path)
    if not resolved.config_stored:
        raise ValueError(f"{path}: the checkpoint records no model config (an original Auto-AVSR file?); "
                         "it is already a plain state dict")
    model = build_model(resolved)  # no tokenizer check: a model may be exported without its SentencePiece files
    tokenizer = resolved.tokenizer
    meta = {"sp_model_path": tokenizer.sp_model_path if tokenizer is not None else None,
            "dict_path": tokenizer.dict_path if tokenizer is not None else None}
    return model, resolved.config, meta


def exported_state(path: str, merge_lora: bool = False) -> Tuple[Dict[str, torch.Tensor], Any, Dict[str, Any]]:
    """``(state_dict, ModelConfig, meta)`` of the checkpoint ``path``: what a checkpoint of
    the model stores (for ``--use-qlora``: adapters and new modules), or with ``merge_lora``
    the full-precision merged model (its config without ``use_qlora``)."""
    from espnet.nets.pytorch_backend.lora.merge import merge_qlora

    model, config, meta = _load(path)
    if merge_lora:
        model = merge_qlora(model)
        state = model.state_dict()
    else:
        state = model.checkpoint_state_dict()
    return {k: v.detach().cpu() for k, v in state.items()}, model.config, meta


def export_checkpoint(path: str, out: Optional[str] = None, merge_lora: bool = False) -> str:
    """Write ``out`` (default: ``<path stem>.pth``, or ``<path stem>_merged.pth`` with
    ``merge_lora``) and its ``.json`` sidecar; returns ``out``."""
    from espnet.training.checkpoints import save_with_sidecar
    from espnet.training.tokenizer_files import relative_tokenizer_paths

    stem = os.path.splitext(path)[0]
    out = out or (stem + "_merged.pth" if merge_lora else stem + ".pth")
    if os.path.abspath(out) == os.path.abspath(path):
        raise ValueError(f"--out {out} would overwrite the input checkpoint")
    state, config, meta = exported_state(path, merge_lora)
    keep = relative_tokenizer_paths(meta, os.path.dirname(os.path.abspath(out)))
    save_with_sidecar(state, out, {"model_config": config.to_dict(), **keep, "exported_from": os.path.abspath(path),
                                   "merged_lora": bool(merge_lora)})
    return out


def export_merged(path: str, out: Optional[str] = None) -> str:
    """``export_checkpoint(path, out, merge_lora=True)``."""
    return export_checkpoint(path, out, merge_lora=True)


def _unshared(state: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """Contiguous tensors, none sharing storage with another (safetensors refuses tied
    weights; a shared tensor is stored as a copy, and loading fills both places again)."""
    seen, out = set(), {}
    for key, value in state.items():
        tensor = value.contiguous()
        pointer = tensor.untyped_storage().data_ptr()
        if pointer in seen:
            tensor = tensor.clone()
        seen.add(tensor.untyped_storage().data_ptr())
        out[key] = tensor
    return out


def _readme(config, tokenizer: Dict[str, Optional[str]], source: str) -> str:
    pretrained = [f"{key.replace('_', ' ')} model `{name}`" for key, name in config.model_names().items()]
    components = ", ".join(f"{what} `{name}`" for what, name in (
        ("vision encoder", config.vision_encoder), ("audio encoder", config.audio_encoder),
        ("fusion", config.fusion_type if config.modality == "audiovisual" else None),
        ("encoder", config.describe_encoder()), ("decoder", config.decoder)) if name)
    lines = [
        "# AVSR model export", "",
        f"A {config.modality} speech recogniser ({components}; adim {config.adim}) exported from `{source}`.", "",
        "* `config.json`: the model config (`model_config`) and the tokenizer file names;",
        "* `model.safetensors`: the weights" + (" (LoRA adapters and new modules; the 4-bit base weights are "
                                                "rebuilt from the pretrained models)" if config.use_qlora else "") + ";",
    ]
    if tokenizer.get("sp_model_path"):
        lines.append(f"* `{tokenizer['sp_model_path']}`, `{tokenizer['dict_path']}`: the SentencePiece tokenizer.")
    else:
        lines.append("* no SentencePiece tokenizer: the decoder uses its pretrained model's own tokenizer.")
    if pretrained:
        lines += ["", "Pretrained components are loaded from " + ", ".join(pretrained) + "; if they live elsewhere "
                  "on this machine, give the matching `--vision-model-name` / `--audio-model-name` / "
                  "`--decoder-model-name` to `eval.py`."]
    lines += ["", "Evaluate (no model or tokenizer flags needed):", "", "```bash",
              "python eval.py --root-dir DATA --test-file test.csv --pretrained-model-path THIS_FOLDER", "```", ""]
    return "\n".join(lines)


def export_hf_folder(path: str, out_dir: str, merge_lora: bool = False) -> str:
    """Write the Hugging Face-style folder ``out_dir`` (see the module docstring) for the
    checkpoint ``path``; returns ``out_dir``."""
    if os.path.isdir(out_dir) and os.listdir(out_dir):
        raise ValueError(f"--hf-dir {out_dir} exists and is not empty")
    state, config, meta = exported_state(path, merge_lora)
    return write_export_folder(state, config, meta, out_dir, exported_from=os.path.abspath(path),
                               merged_lora=merge_lora)


def write_export_folder(state: Dict[str, torch.Tensor], config, meta: Dict[str, Any], out_dir: str,
                        exported_from: str, merged_lora: bool = False) -> str:
    """Write ``out_dir`` (a new or empty folder): ``config.json`` (model config, tokenizer file
    names), ``model.safetensors`` (``state``), the tokenizer files named in ``meta``
    (``sp_model_path``, ``dict_path``) and a README. It is built in a sibling folder and
    renamed into place, so an interrupted export leaves no half folder; returns ``out_dir``."""
    try:
        from safetensors.torch import save_file
    except ImportError:
        raise ImportError("exporting needs the safetensors package: pip install safetensors") from None
    from espnet.training.checkpoints import EXPORT_CONFIG, EXPORT_WEIGHTS
    from espnet.training.tokenizer_files import copy_tokenizer
    from espnet.utils.atomic_write import current_umask

    if os.path.isdir(out_dir) and os.listdir(out_dir):
        raise ValueError(f"{out_dir} exists and is not empty")
    if os.path.exists(out_dir) and not os.path.isdir(out_dir):
        raise ValueError(f"{out_dir} exists and is not a folder")
    parent = os.path.dirname(os.path.abspath(out_dir))
    os.makedirs(parent, exist_ok=True)
    staging = tempfile.mkdtemp(prefix=f".{os.path.basename(os.path.abspath(out_dir))}.", dir=parent)
    try:
        tokenizer = copy_tokenizer(meta.get("sp_model_path"), meta.get("dict_path"), staging, subdir="")
        save_file(_unshared(state), os.path.join(staging, EXPORT_WEIGHTS), metadata={"format": "pt"})
        exported = {"format": EXPORT_FORMAT, "format_version": EXPORT_FORMAT_VERSION,
                    "model_config": config.to_dict(), "tokenizer": tokenizer, "exported_from": exported_from,
                    "merged_lora": bool(merged_lora)}
        with open(os.path.join(staging, EXPORT_CONFIG), "w", encoding="utf8") as handle:
            json.dump(exported, handle, indent=2)
        with open(os.path.join(staging, "README.md"), "w", encoding="utf8") as handle:
            handle.write(_readme(config, tokenizer, os.path.basename(exported_from)))
        os.chmod(staging, 0o777 & ~current_umask())  # mkdtemp makes it 0700
        os.replace(staging, out_dir)  # replaces an empty out_dir too
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return out_dir


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--pretrained-model-path", required=True, help="Checkpoint of ours (.ckpt or model_avg_*.pth).")
    out = p.add_mutually_exclusive_group()
    out.add_argument("--out", default=None, help="Output .pth (a .json sidecar is written beside it).")
    out.add_argument("--hf-dir", default=None,
                     help="Write a Hugging Face-style folder instead: config.json + model.safetensors + tokenizer "
                          "files + README.md (a new or empty directory).")
    p.add_argument("--merge-lora", action="store_true",
                   help="Merge the LoRA adapters of a --use-qlora model into full-precision weights.")
    args = p.parse_args(argv)
    try:
        if args.hf_dir:
            written = export_hf_folder(args.pretrained_model_path, args.hf_dir, merge_lora=args.merge_lora)
        else:
            written = export_checkpoint(args.pretrained_model_path, args.out, merge_lora=args.merge_lora)
    except (FileNotFoundError, ValueError, ImportError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"wrote {written}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
