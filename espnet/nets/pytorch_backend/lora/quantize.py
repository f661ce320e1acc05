"""4-bit NF4 quantisation of linear layers with bitsandbytes, and the way back.

``quantize_linears`` swaps every ``torch.nn.Linear`` of a module (except the ones it is
told to keep) for a ``bitsandbytes.nn.Linear4bit``: NF4 code, blocks of 64 weights with
double quantisation of the block scales (the QLoRA recipe), weights frozen. The
quantisation itself runs on the device the weights are on (CPU here, GPU when present).
``dequantize_weight`` gives back a float matrix ``(out_features, in_features)``.
"""

from typing import Iterable, List, Set, Tuple

import torch

INSTALL_HINT = "pip install bitsandbytes==0.50.2 peft==0.21.2 (both are in requirements.txt)"


def import_bitsandbytes():
    try:
        import bitsandbytes
    except ImportError as err:
        raise ImportError(f"--use-qlora needs the 'bitsandbytes' package: {INSTALL_HINT}") from err
    return bitsandbytes


def import_peft():
    try:
        import peft
    except ImportError as err:
        raise ImportError(f"--use-qlora needs the 'peft' package: {INSTALL_HINT}") from err
    return peft


def is_quantized_linear(module: torch.nn.Module) -> bool:
    bnb = import_bitsandbytes()
    return isinstance(module, bnb.nn.Linear4bit)


def _linear_children(root: torch.nn.Module, keep: Set[int]) -> List[Tuple[torch.nn.Module, str, torch.nn.Linear]]:
    found = []
    for parent in root.modules():
        for attr, child in parent.named_children():
            if type(child) is torch.nn.Linear and id(child) not in keep:
                found.append((parent, attr, child))
    return found


def quantize_linears(root: torch.nn.Module, compute_dtype: torch.dtype, keep: Iterable[torch.nn.Module] = ()) -> int:
    """Replace the ``nn.Linear`` layers under ``root`` (not those in ``keep``) by 4-bit NF4
    layers in place; returns how many were replaced."""
    bnb = import_bitsandbytes()
    keep_ids = {id(m) for m in keep}
    layers = _linear_children(root, keep_ids)
    for parent, attr, linear in layers:
        device = linear.weight.device
        q = bnb.nn.Linear4bit(
            linear.in_features, linear.out_features, bias=linear.bias is not None, compute_dtype=compute_dtype,
            compress_statistics=True, quant_type="nf4", quant_storage=torch.uint8, device="meta",
        )
        q.weight = bnb.nn.Params4bit(linear.weight.data, requires_grad=False, quant_type="nf4",
                                     compress_statistics=True, quant_storage=torch.uint8)
        if linear.bias is not None:
            q.bias = torch.nn.Parameter(linear.bias.data, requires_grad=False)
        q = q.to(device)  # quantises the weight on its device
        # bitsandbytes repacks 4-bit weights for an AVX512-BF16 CPU kernel at the first
        # eval-mode forward (with bf16 block scales, and failing for layers narrower than a
        # block); keep one format so that results do not depend on the CPU model.
        q.support_avx512bf16_for_cpu = False
        q.train(linear.training)
        setattr(parent, attr, q)
    return len(layers)


def dequantize_weight(layer: torch.nn.Module) -> torch.Tensor:
    """Float weight ``(out_features, in_features)`` of a ``Linear4bit`` (in the dtype the
    weight had before quantisation)."""
    bnb = import_bitsandbytes()
    weight = layer.weight
    return bnb.functional.dequantize_4bit(weight.data, weight.quant_state)


def logical_numel(param: torch.Tensor) -> int:
    """Number of weights a (possibly 4-bit packed) parameter stands for."""
    state = getattr(param, "quant_state", None)
    if state is not None and getattr(state, "shape", None) is not None:
        return int(torch.Size(state.shape).numel())
    return int(param.numel())
