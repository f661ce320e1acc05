"""Stopping a training run on SIGTERM / SIGINT with a checkpoint it can resume from."""

import os
import select
import signal
import sys
import threading
import time
from typing import Callable, Dict, Optional

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


DEFAULT_SIGNAL_GRACE_S = 60.0


class StopWatchdog:
    """Ends the process when a stop signal cannot be served in time.

    Python runs signal handlers in the main thread between bytecodes, so a main thread
    blocked inside a collective (a dead or frozen peer rank) never sees SIGTERM. The C-level
    handler still writes the signal number to a wakeup pipe (:func:`signal.set_wakeup_fd`);
    this thread reads it and, ``grace_s`` seconds after the first stop signal (or at once on a
    second one), prints one line and exits with ``128 + signum`` (``os._exit``: no Python
    clean-up can run while the main thread is stuck). A run that stops normally in time is
    never touched: :meth:`close` ends the watch.

    Call :meth:`start` and :meth:`close` from the main thread.
    """

    def __init__(self, grace_s: float, describe: Callable[[], str] = lambda: "",
                 signals=STOP_SIGNALS) -> None:
        if grace_s <= 0:
            raise ValueError(f"--signal-grace must be > 0 seconds, got {grace_s:g}")
        self.grace_s = grace_s
        self.describe = describe
        self.signals = {int(s) for s in signals}
        self._read_fd: Optional[int] = None
        self._write_fd: Optional[int] = None
        self._previous_fd = -1
        self._closed = threading.Event()
        self._thread: Optional[threading.Thread] = None

    def start(self) -> None:
        self._read_fd, self._write_fd = os.pipe()
        os.set_blocking(self._write_fd, False)
        self._previous_fd = signal.set_wakeup_fd(self._write_fd, warn_on_full_buffer=False)
        self._thread = threading.Thread(target=self._watch, name="stop-watchdog", daemon=True)
        self._thread.start()

    def close(self) -> None:
        if self._thread is None:
            return
        signal.set_wakeup_fd(self._previous_fd)
        self._closed.set()
        os.write(self._write_fd, b"\0")  # wakes the reader; 0 is no signal number
        self._thread.join(timeout=5)
        for fd in (self._read_fd, self._write_fd):
            os.close(fd)
        self._thread = None

    def _watch(self) -> None:
        first: Optional[int] = None
        deadline = None
        while not self._closed.is_set():
            wait = None if deadline is None else max(deadline - time.monotonic(), 0.0)
            ready, _, _ = select.select([self._read_fd], [], [], wait)
            if self._closed.is_set():
                return
            if not ready:  # the grace period ran out
                self._exit(first, f"still running {self.grace_s:g} s after {signal.Signals(first).name} "
                                  f"(--signal-grace): the step or the checkpoint did not finish, e.g. a "
                                  f"collective waits for a rank that is gone")
            for signum in os.read(self._read_fd, 64):
                if signum not in self.signals:
                    continue
                if first is not None:
                    self._exit(signum, f"second stop signal ({signal.Signals(signum).name})")
                first, deadline = signum, time.monotonic() + self.grace_s

    def _exit(self, signum: int, why: str) -> None:
        where = self.describe()
        print(f"error: {why}; exiting without a new checkpoint{' (' + where + ')' if where else ''}",
              file=sys.stderr, flush=True)
        os._exit(128 + signum)


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
    leaves :attr:`signum` set for the caller to report. When the main thread cannot get
    there within ``grace_s`` seconds (``--signal-grace``; e.g. it waits in a collective for a
    rank that is gone), :class:`StopWatchdog` ends the process with ``128 + signum``.
    """

    def __init__(self, checkpoint: str, grace_s: float = DEFAULT_SIGNAL_GRACE_S) -> None:
        self.checkpoint = checkpoint
        self.grace_s = grace_s
        self.signum: Optional[int] = None
        self._previous: Dict[int, object] = {}
        self._stepped = False
        self._watchdog: Optional[StopWatchdog] = None
        self._where = ""

    def _handle(self, signum: int, frame) -> None:
        if self.signum is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.signum = signum

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self.signum = None
        if threading.current_thread() is threading.main_thread():
            self._previous = {s: signal.signal(s, self._handle) for s in STOP_SIGNALS}
            rank = f"rank {trainer.global_rank} of {trainer.world_size}, " if trainer.world_size > 1 else ""
            self._watchdog = StopWatchdog(self.grace_s, lambda: f"{rank}{self._where}")
            self._watchdog.start()

    def on_train_batch_start(self, trainer: Trainer, pl_module: LightningModule, batch, batch_idx) -> None:
        self._where = f"epoch {trainer.current_epoch}, step {trainer.global_step}"

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
        if self._watchdog is not None:
            self._watchdog.close()
            self._watchdog = None
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous = {}
