"""Stopping a training run on SIGTERM / SIGINT with a checkpoint it can resume from."""

import signal
import threading
from typing import Dict, Optional

from pytorch_lightning import Callback, LightningModule, Trainer

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class TrainingInterrupted(Exception):
    """Training stopped on a signal after writing ``checkpoint``; exit status ``128 + signum``
    (143 for SIGTERM, 130 for SIGINT), as a shell reports a process killed by the signal."""

    def __init__(self, signum: int, checkpoint: str) -> None:
        self.signum = signum
        self.checkpoint = checkpoint
        self.exit_code = 128 + signum
        super().__init__(f"{signal.Signals(signum).name} received; resumable checkpoint written: {checkpoint} "
                         f"(continue with --ckpt-path {checkpoint})")


class SaveOnSignal(Callback):
    """While training, SIGTERM and SIGINT finish the current batch, write a resumable
    checkpoint (model, optimizer, scheduler, loop counters, sampler position, RNG states) to
    ``checkpoint`` and raise :class:`TrainingInterrupted`.

    The handlers are installed when training starts (replacing Lightning's own SIGTERM
    handler, which stops without a checkpoint and exits 0) and restored when it ends. A
    second Ctrl+C stops at once. With gradient accumulation the run stops after the batch
    of the next optimiser step (a checkpoint cannot hold half-accumulated gradients). Under
    DDP the ranks agree after every optimiser step, so all of them stop at the same step
    even when only one process got the signal. A signal that comes after the last batch
    leaves :attr:`signum` set for the caller to report.
    """

    def __init__(self, checkpoint: str) -> None:
        self.checkpoint = checkpoint
        self.signum: Optional[int] = None
        self._previous: Dict[int, object] = {}
        self._stepped = False

    def _handle(self, signum: int, frame) -> None:
        if self.signum is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.signum = signum

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self.signum = None
        if threading.current_thread() is threading.main_thread():
            self._previous = {s: signal.signal(s, self._handle) for s in STOP_SIGNALS}

    def on_before_optimizer_step(self, trainer: Trainer, pl_module: LightningModule, optimizer) -> None:
        self._stepped = True

    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, outputs, batch, batch_idx) -> None:
        stepped, self._stepped = self._stepped, False
        if not stepped or not trainer.strategy.reduce_boolean_decision(self.signum is not None, all=False):
            return
        trainer.save_checkpoint(self.checkpoint, weights_only=False)
        self._restore()
        raise TrainingInterrupted(self.signum or signal.SIGTERM, self.checkpoint)

    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._restore()

    def on_exception(self, trainer: Trainer, pl_module: LightningModule, exception: BaseException) -> None:
        self._restore()

    def _restore(self) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous = {}
