"""Multi-process training settings (Lightning DDP), the rule that keeps the ranks' collectives
in step, and a check that the ranks agree.

Every collective (metric sync, broadcast, barrier, all-gather) must be reached by all ranks in
the same order, or the job hangs. Lightning synchronises ``sync_dist`` metrics lazily, the first
time they are read, and some readers run on rank 0 alone (the progress bar, the loggers): a
metric first read there makes rank 0 enter an all-reduce that the other ranks never reach.
:class:`MetricsOnEveryRank` reads them on every rank at every hook where such a reader may
run, before it does, so the lazy sync always happens in step; the collectives of this
project's callbacks (checkpoint policy, stop signal, non-finite guard, digest check) are
reached by every rank unconditionally. A collective that still waits longer than
``--dist-timeout`` fails (the timeout is set on the process group) and
:func:`collective_failure` turns that into one line naming the rank, epoch and step.
"""

import hashlib
from datetime import timedelta
from typing import Any, Dict, Optional

import torch
from pytorch_lightning import Callback, LightningModule, Trainer


def uses_cuda(accelerator: str) -> bool:
    """Whether ``--accelerator`` resolves to CUDA GPUs on this machine."""
    return accelerator in ("gpu", "cuda") or (accelerator == "auto" and torch.cuda.is_available())


DEFAULT_DIST_TIMEOUT_S = 1800.0


def ddp_settings(devices: Optional[int], num_nodes: int, accelerator: str,
                 timeout_s: float = DEFAULT_DIST_TIMEOUT_S) -> Dict[str, Any]:
    """Trainer arguments for ``--gpus`` / ``--num-nodes``: one process per device; DDP when
    there is more than one process (the backend follows the device: NCCL on CUDA, gloo on
    CPU), with ``timeout_s`` (``--dist-timeout``) as the process group's timeout: a
    collective that waits longer fails instead of hanging. BatchNorm statistics are
    synchronised across processes (SyncBatchNorm) only on CUDA, the one place PyTorch
    supports it; elsewhere every rank keeps plain BatchNorm."""
    multi = num_nodes > 1 or (devices is not None and devices > 1)
    strategy: Any = "auto"
    if multi:
        from pytorch_lightning.strategies import DDPStrategy

        strategy = DDPStrategy(timeout=timedelta(seconds=timeout_s))
    return {
        "devices": devices if devices is not None else "auto",
        "num_nodes": num_nodes,
        "strategy": strategy,
        "sync_batchnorm": multi and uses_cuda(accelerator),
    }


class MetricsOnEveryRank(Callback):
    """Computes the logged metrics (``trainer.callback_metrics``, which computes the progress
    bar's and the loggers' too) on every rank at each hook where a rank-0-only reader may
    first read them. Lightning caches a computed metric until it is updated again, so the
    reader then finds it synchronised already and starts no collective of its own.

    Must come before every other callback (``train.py`` puts it first; Lightning appends its
    progress bar after the callbacks it is given)."""

    def _compute(self, trainer: Trainer) -> None:
        if trainer.world_size > 1:
            trainer.callback_metrics  # noqa: B018 (a property that computes and syncs)

    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, outputs, batch, batch_idx) -> None:
        self._compute(trainer)

    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._compute(trainer)

    def on_validation_batch_end(self, trainer: Trainer, pl_module: LightningModule, outputs, batch, batch_idx,
                                dataloader_idx: int = 0) -> None:
        self._compute(trainer)

    def on_validation_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._compute(trainer)

    def on_validation_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._compute(trainer)

    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._compute(trainer)


class CollectiveTimeout(RuntimeError):
    """A collective of a multi-process run failed or waited longer than ``--dist-timeout``
    (exit status 1)."""

    exit_code = 1


def collective_failure(err: BaseException, rank: int, world_size: int, epoch: int, step: int,
                       timeout_s: float) -> Optional[CollectiveTimeout]:
    """The one-line error for ``err`` raised by ``trainer.fit`` of a multi-process run when it
    is a failed collective (a timeout, or a peer that went away), else ``None``."""
    import torch.distributed as dist

    text = str(err)
    lowered = text.lower()
    timed_out = "timed out" in lowered or "timeout" in lowered
    peer_gone = any(s in lowered for s in ("connection closed by peer", "connection reset by peer",
                                           "broken pipe", "connection refused"))
    backend_error = isinstance(err, getattr(dist, "DistBackendError", ())) or (
        isinstance(err, RuntimeError) and ("gloo" in lowered or "nccl" in lowered))
    if world_size < 2 or not (backend_error or timed_out) or not (timed_out or peer_gone):
        return None
    if "waiting for clients" in lowered:  # the rendezvous of init_process_group
        what = f"waited longer than --dist-timeout {timeout_s:g} s for the other ranks to start"
    elif timed_out:
        what = f"waited longer than --dist-timeout {timeout_s:g} s in a collective"
    else:
        what = "lost its connection to another rank in a collective"
    first = text.strip().splitlines()[0][:300] if text.strip() else type(err).__name__
    return CollectiveTimeout(f"rank {rank} of {world_size} {what} at epoch {epoch}, step {step}: another rank "
                             f"stopped, crashed or is stuck (see its log); {first}")


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
