"""Multi-process training settings (Lightning DDP) and a check that the ranks agree."""

import hashlib
from typing import Any, Dict, Optional

import torch
from pytorch_lightning import Callback, LightningModule, Trainer


def uses_cuda(accelerator: str) -> bool:
    """Whether ``--accelerator`` resolves to CUDA GPUs on this machine."""
    return accelerator in ("gpu", "cuda") or (accelerator == "auto" and torch.cuda.is_available())


def ddp_settings(devices: Optional[int], num_nodes: int, accelerator: str) -> Dict[str, Any]:
    """Trainer arguments for ``--gpus`` / ``--num-nodes``: one process per device; DDP when
    there is more than one process (the backend follows the device: NCCL on CUDA, gloo on
    CPU). BatchNorm statistics are synchronised across processes (SyncBatchNorm) only on
    CUDA, the one place PyTorch supports it; elsewhere every rank keeps plain BatchNorm."""
    multi = num_nodes > 1 or (devices is not None and devices > 1)
    return {
        "devices": devices if devices is not None else "auto",
        "num_nodes": num_nodes,
        "strategy": "ddp" if multi else "auto",
        "sync_batchnorm": multi and uses_cuda(accelerator),
    }


def parameter_digest(module: torch.nn.Module) -> str:
    """SHA-256 (first 16 hex digits) of every parameter's bytes, in name order."""
    digest = hashlib.sha256()
    for name, param in sorted(module.named_parameters()):
        digest.update(name.encode())
        digest.update(param.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()[:16]


class RanksAgree(Callback):
    """At the end of a multi-process run every rank prints the digest of its parameters, and
    a difference between ranks is an error (DDP keeps the weights identical; different
    weights mean the processes diverged, e.g. different data or code on the nodes).
    BatchNorm running statistics are buffers, local to each rank without SyncBatchNorm, and
    not compared."""

    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if trainer.world_size < 2:
            return
        mine = parameter_digest(pl_module)
        print(f"rank {trainer.global_rank}/{trainer.world_size}: training finished, parameter digest {mine}", flush=True)
        digests = [None] * trainer.world_size
        torch.distributed.all_gather_object(digests, mine)
        if len(set(digests)) != 1:
            raise RuntimeError(f"the ranks finished with different weights (parameter digests {digests})")
