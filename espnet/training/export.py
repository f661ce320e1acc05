"""Export a trained checkpoint as a plain state dict + JSON sidecar (what ``eval.py`` loads).

    python -m espnet.training.export --pretrained-model-path exp/run/epoch=9.ckpt --out model.pth
    python -m espnet.training.export --pretrained-model-path exp/run/model_avg_10.pth --merge-lora

``--merge-lora`` (for ``--use-qlora`` models): fold the LoRA adapters into the dequantised
pretrained weights and write a full-precision model (``<name>_merged.pth`` by default)
with the key layout of the same model built without ``--use-qlora``; it needs the
pretrained models (``--*-model-name`` recorded in the checkpoint) to be present.
"""

import argparse
import os
import sys
from typing import Optional

import torch


def _load(path: str):
    from espnet.asr.evaluate import load_model
    from espnet.nets.pytorch_backend.model_config import ModelConfig
    from espnet.training.checkpoints import load_checkpoint

    state, config, meta = load_checkpoint(path)
    if config is None:
        raise ValueError(f"{path}: the checkpoint records no model config (an original Auto-AVSR file?); "
                         "it is already a plain state dict")
    config = ModelConfig.from_dict(dict(config))
    return load_model(config, state, path), config, meta


def export_checkpoint(path: str, out: Optional[str] = None, merge_lora: bool = False) -> str:
    """Write ``out`` (default: ``<path stem>.pth``, or ``<path stem>_merged.pth`` with
    ``merge_lora``) and its ``.json`` sidecar; returns ``out``."""
    from espnet.nets.pytorch_backend.lora.merge import merge_qlora
    from espnet.training.checkpoints import write_sidecar

    model, config, meta = _load(path)
    stem = os.path.splitext(path)[0]
    out = out or (stem + "_merged.pth" if merge_lora else stem + ".pth")
    if os.path.abspath(out) == os.path.abspath(path):
        raise ValueError(f"--out {out} would overwrite the input checkpoint")
    if merge_lora:
        model = merge_qlora(model)
        state = model.state_dict()
    else:
        state = model.checkpoint_state_dict()
    keep = {k: meta[k] for k in ("sp_model_path", "dict_path") if k in meta}
    torch.save({k: v.detach().cpu() for k, v in state.items()}, out)
    write_sidecar(out, {"model_config": config.to_dict(), **keep, "exported_from": os.path.abspath(path),
                        "merged_lora": bool(merge_lora)})
    return out


def export_merged(path: str, out: Optional[str] = None) -> str:
    """``export_checkpoint(path, out, merge_lora=True)``."""
    return export_checkpoint(path, out, merge_lora=True)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--pretrained-model-path", required=True, help="Checkpoint of ours (.ckpt or model_avg_*.pth).")
    p.add_argument("--out", default=None, help="Output .pth (a .json sidecar is written beside it).")
    p.add_argument("--merge-lora", action="store_true",
                   help="Merge the LoRA adapters of a --use-qlora model into full-precision weights.")
    args = p.parse_args(argv)
    try:
        out = export_checkpoint(args.pretrained_model_path, args.out, merge_lora=args.merge_lora)
    except (FileNotFoundError, ValueError, ImportError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
