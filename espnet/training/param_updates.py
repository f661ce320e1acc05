"""``--log-param-updates``: per-component gradient norm, parameter norm and
update-to-parameter ratio of optimiser steps, and the learning rate, to the logger."""

import math
from typing import Dict, Iterator, List, Optional, Tuple

import torch
from pytorch_lightning import Callback, LightningModule, Trainer

ADAPTERS = "adapters"


def component_of(name: str) -> str:
    """The component a parameter of :class:`E2E` belongs to: its top-level module
    (``frontend``, ``vision_frontend``, ``audio_frontend``, ``proj_encoder``, ``fusion``,
    ``encoder``, ``decoder``, ``ctc``), or ``adapters`` for LoRA parameters wherever they sit."""
    if "lora_" in name:
        return ADAPTERS
    return name.split(".", 1)[0]


def component_parameters(model: torch.nn.Module) -> Dict[str, List[Tuple[str, torch.nn.Parameter]]]:
    """Floating-point parameters by component (4-bit quantised weights are storage, not
    parameters anything updates, and are left out)."""
    groups: Dict[str, List[Tuple[str, torch.nn.Parameter]]] = {}
    for name, param in model.named_parameters():
        if param.is_floating_point():
            groups.setdefault(component_of(name), []).append((name, param))
    return groups


def _norm(tensors: Iterator[torch.Tensor]) -> float:
    """L2 norm of several tensors together, accumulated in float64."""
    total = 0.0
    for t in tensors:
        total += float(torch.linalg.vector_norm(t.detach().double()) ** 2)
    return math.sqrt(total)


class ParamUpdateLogger(Callback):
    """Every ``every`` optimiser steps (rank 0 only; DDP keeps the ranks' weights equal),
    logs for each component C of ``pl_module.model`` (see :func:`component_of`):

    * ``updates/C/grad_norm``: L2 norm of its gradients before clipping (0 without any);
    * ``updates/C/param_norm``: L2 norm of its parameters before the step;
    * ``updates/C/update_ratio``: ``||theta_after - theta_before|| / ||theta_before||``;

    and ``updates/lr``, the learning rate of the step. Frozen parameters are measured like
    the others, so a frozen component shows an update ratio of exactly 0. The parameters are
    copied before a logged step (one extra copy of the floating-point weights for its duration).
    """

    def __init__(self, every: int = 1) -> None:
        if every < 1:
            raise ValueError(f"--log-param-updates must be >= 1, got {every}")
        self.every = every
        self._before: Optional[Dict[str, List[torch.Tensor]]] = None
        self._metrics: Dict[str, float] = {}
        self._step = 0

    def on_before_optimizer_step(self, trainer: Trainer, pl_module: LightningModule, optimizer) -> None:
        self._before = None
        if not trainer.is_global_zero or trainer.global_step % self.every:
            return
        self._step = trainer.global_step
        groups = component_parameters(pl_module.model)
        self._before = {c: [p.detach().clone() for _, p in params] for c, params in groups.items()}
        self._metrics = {"updates/lr": float(optimizer.param_groups[0]["lr"])}
        for component, params in groups.items():
            self._metrics[f"updates/{component}/grad_norm"] = _norm(p.grad for _, p in params if p.grad is not None)
            self._metrics[f"updates/{component}/param_norm"] = _norm(b for b in self._before[component])

    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, outputs, batch, batch_idx) -> None:
        if self._before is None or trainer.global_step == self._step:  # no optimiser step since the copy
            return
        for component, params in component_parameters(pl_module.model).items():
            before = self._before[component]
            change = _norm(p.detach() - b for (_, p), b in zip(params, before))
            scale = self._metrics[f"updates/{component}/param_norm"]
            self._metrics[f"updates/{component}/update_ratio"] = change / scale if scale > 0 else change
        self._before = None
        for logger in trainer.loggers:
            logger.log_metrics(self._metrics, step=self._step)
