"""``--freeze-param``: parts of the model kept as they were initialised while the rest trains
(e.g. a new decoder on an encoder taken from another model with ``--transfer-encoder``)."""

from typing import List, Sequence

import torch


def freeze(model: torch.nn.Module, prefixes: Sequence[str]) -> List[torch.nn.Module]:
    """Stop the gradients of every parameter of ``model`` named ``prefix`` or ``prefix.*``
    (names as in its state dict, e.g. ``encoder``, ``frontend``, ``encoder.encoders.0``) and
    return the modules the prefixes name, which :func:`keep_frozen_in_eval` then keeps in eval
    mode (dropout off, batch-norm statistics fixed), so a frozen part computes what the
    checkpoint it came from computes.

    Raises:
        ValueError: a prefix matching no trainable parameter (misspelt, or nothing to freeze),
            naming the model's top-level modules.
    """
    modules = dict(model.named_modules())
    frozen = []
    for prefix in prefixes:
        prefix = prefix.rstrip(".")
        matched = [p for name, p in model.named_parameters()
                   if p.requires_grad and (name == prefix or name.startswith(prefix + "."))]
        if not prefix or not matched:
            top = sorted({name.split(".", 1)[0] for name, _ in model.named_parameters()})
            raise ValueError(f"--freeze-param {prefix!r} matches no trainable parameter of the model "
                             f"(its top-level modules: {', '.join(top)})")
        for param in matched:
            param.requires_grad_(False)
        if prefix in modules:
            frozen.append(modules[prefix])
    keep_frozen_in_eval(frozen)
    return frozen


def keep_frozen_in_eval(frozen: Sequence[torch.nn.Module]) -> None:
    """Put the frozen modules (back) in eval mode; call after anything switches the model to training."""
    for module in frozen:
        module.eval()
