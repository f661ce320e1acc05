"""Fold LoRA adapters into their layers and undo the 4-bit quantisation (``--merge-lora``).

Each adapted 4-bit layer becomes an ``nn.Linear`` with weight
``dequantize(W_nf4) + scaling * B @ A`` (what the QLoRA model computes, in the dtype the
pretrained weight had); every other 4-bit layer is dequantised as it is. The result has
the key layout of the same model built without ``--use-qlora``, so it is saved and
loaded like any full-precision checkpoint.
"""

from typing import Tuple

import torch

from espnet.nets.pytorch_backend.lora.qlora_manager import FINGERPRINT_BUFFER, pretrained_components
from espnet.nets.pytorch_backend.lora.quantize import dequantize_weight, is_quantized_linear


def _to_linear(layer: torch.nn.Module, weight: torch.Tensor) -> torch.nn.Linear:
    bias = layer.bias
    out = torch.nn.Linear(layer.in_features, layer.out_features, bias=bias is not None,
                          device=weight.device, dtype=weight.dtype)
    with torch.no_grad():
        out.weight.copy_(weight)
        if bias is not None:
            out.bias.copy_(bias.to(weight.dtype))
    out.requires_grad_(False)
    return out


def _merged(module: torch.nn.Module) -> Tuple[torch.nn.Module, bool]:
    """Replacement for ``module`` when it is a LoRA-wrapped or plain 4-bit layer."""
    base = getattr(module, "base_layer", None)
    if base is not None and hasattr(module, "lora_A"):
        if not is_quantized_linear(base):
            raise ValueError(f"cannot merge a LoRA layer over {type(base).__name__} (expected a 4-bit linear)")
        weight = dequantize_weight(base)
        for adapter in module.active_adapters:
            weight = weight + module.get_delta_weight(adapter).to(weight.dtype)
        return _to_linear(base, weight), True
    if is_quantized_linear(module):
        return _to_linear(module, dequantize_weight(module)), True
    return module, False


def merge_qlora(model: torch.nn.Module) -> torch.nn.Module:
    """Merge in place and return ``model`` without QLoRA (its ``config.use_qlora`` is
    cleared, the fingerprint buffer dropped)."""
    if not getattr(model, "qlora_applied", False):
        raise ValueError("--merge-lora: this model was not trained with --use-qlora; there is nothing to merge")
    for _, _, network in pretrained_components(model):
        for parent in list(network.modules()):
            for attr, child in list(parent.named_children()):
                replacement, changed = _merged(child)
                if changed:
                    setattr(parent, attr, replacement)
    del model._buffers[FINGERPRINT_BUFFER]
    model.qlora_applied = False
    config = getattr(model, "config", None)
    if config is not None:
        config.use_qlora = False
    return model
