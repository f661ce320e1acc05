"""Linear warm-up then cosine decay, stepped every optimizer step (Auto-AVSR schedule)."""

import math

import torch


def warmup_cosine_lambda(warmup_steps: int, total_steps: int):
    """Multiplier for step ``s`` (0-based): ``(s+1)/warmup`` while warming up, then
    ``0.5 * (1 + cos(pi * (s+1-warmup) / (total-warmup)))``."""
    decay_steps = max(1, total_steps - warmup_steps)

    def factor(step: int) -> float:
        count = step + 1
        if count < warmup_steps:
            return count / warmup_steps
        progress = min(1.0, (count - warmup_steps) / decay_steps)
        return 0.5 * (1.0 + math.cos(math.pi * progress))

    return factor


def build_warmup_cosine(
    optimizer: torch.optim.Optimizer, warmup_epochs: int, max_epochs: int, steps_per_epoch: int
) -> torch.optim.lr_scheduler.LambdaLR:
    """Scheduler over ``max_epochs * steps_per_epoch`` steps with ``warmup_epochs`` of warm-up."""
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer,
        warmup_cosine_lambda(warmup_epochs * steps_per_epoch, max_epochs * steps_per_epoch),
    )


def build_adamw(params, lr: float, weight_decay: float, fused: bool = True) -> torch.optim.AdamW:
    """The Auto-AVSR optimiser: AdamW with betas (0.9, 0.98).

    With ``fused`` (and every parameter on the CPU or a CUDA GPU) it runs PyTorch's fused
    kernel: one pass over each parameter's weights, gradient and moments instead of one per
    operation; the same update to float rounding (on the CPU PyTorch's default is the
    per-parameter, per-operation loop; ``benchmarks/train_speed.py --full-size`` measures
    the difference on a full-size model). A fused optimiser cannot be combined with fp16's
    gradient scaler and clipping: pass ``fused=False`` there (under bf16 mixed precision the
    training module clips the gradients itself)."""
    params = list(params)
    devices = {p.device.type for p in params}
    fused = fused and devices in ({"cpu"}, {"cuda"}) and all(p.is_floating_point() for p in params)
    return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay, betas=(0.9, 0.98), fused=fused or None)


def adamw_warmup_cosine(params, trainer, lr: float, weight_decay: float, warmup_epochs: int, max_epochs: int):
    """What ``LightningModule.configure_optimizers`` returns for the Auto-AVSR recipe: AdamW
    (:func:`build_adamw`, fused except under fp16 mixed precision, whose gradient scaler
    cannot unscale for clipping before a fused step) and :func:`build_warmup_cosine` stepped
    after every optimiser step.

    Steps per epoch come from ``trainer.estimated_stepping_batches``, which counts optimiser
    steps: ``ceil(batches / accumulate_grad_batches)`` per epoch (Lightning also steps on an
    epoch's last, incomplete accumulation), so ``--accumulate-grad-batches`` keeps the
    warm-up and decay lengths in epochs."""
    optimizer = build_adamw(params, lr, weight_decay, fused=str(trainer.precision) != "16-mixed")
    steps_per_epoch = max(1, math.ceil(trainer.estimated_stepping_batches / max_epochs))
    scheduler = build_warmup_cosine(optimizer, warmup_epochs, max_epochs, steps_per_epoch)
    return [optimizer], [{"scheduler": scheduler, "interval": "step", "frequency": 1}]
