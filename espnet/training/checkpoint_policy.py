"""Which checkpoints a run keeps (epoch files, last, best, final), early stopping, and the
run directory's index ``checkpoints.json`` that says which file is which."""

import json
import math
import os
from typing import Any, Dict, List, Optional

from pytorch_lightning import LightningModule, Trainer
from pytorch_lightning.callbacks import Checkpoint

from espnet.training.checkpoints import epoch_checkpoints
from espnet.utils.atomic_write import atomic_json_dump

INDEX_FILE = "checkpoints.json"
LAST, BEST, FINAL = "last.ckpt", "best.ckpt", "final.ckpt"


def read_index(run_dir: str) -> Dict[str, Any]:
    """``RUN/checkpoints.json`` as a dict (empty when the run has none yet)."""
    path = os.path.join(run_dir, INDEX_FILE)
    if not os.path.isfile(path):
        return {}
    with open(path, encoding="utf8") as handle:
        return json.load(handle)


def update_index(run_dir: str, **entries: Any) -> Dict[str, Any]:
    """Merge ``entries`` into ``RUN/checkpoints.json`` (written atomically); returns the index."""
    index = read_index(run_dir)
    index.update(entries)
    atomic_json_dump(index, os.path.join(run_dir, INDEX_FILE))
    return index


def epoch_of(path: str) -> int:
    """``.../epoch=12.ckpt`` -> 12."""
    return int(os.path.basename(path)[len("epoch="):-len(".ckpt")])


class CheckpointPolicy(Checkpoint):
    """Checkpoints of a run, all in ``run_dir`` and all resumable Lightning checkpoints:

    * ``epoch=E.ckpt`` every ``save_every`` epochs, of which the ``keep_last`` most recent
      are kept (``-1`` = all; ``0`` = none);
    * ``last.ckpt`` at the end of every epoch (and on SIGTERM/SIGINT, see
      :class:`~espnet.training.interrupt.SaveOnSignal`): where to resume;
    * ``best.ckpt`` whenever the validation metric ``monitor`` (lower is better: ``loss_val``
      or ``wer_val``) improves on the best so far; it is checked every ``check_every``
      epochs (the epochs it is computed in);
    * ``final.ckpt`` when training ends (all epochs, or stopped early).

    With ``patience``, training stops after that many checks in a row without improvement.
    ``checkpoints.json`` (see :func:`update_index`) names the files after every epoch (plus
    the entries of ``index_extra``); its ``best`` entry holds the epoch and score. Under DDP every rank takes rank 0's decisions
    (checkpoint saving synchronises the ranks) and only rank 0 deletes files.
    """

    def __init__(self, run_dir: str, save_every: int = 1, keep_last: int = 10, monitor: Optional[str] = None,
                 check_every: int = 1, patience: Optional[int] = None,
                 index_extra: Optional[Dict[str, Any]] = None) -> None:
        if save_every < 1:
            raise ValueError(f"--save-every must be >= 1, got {save_every}")
        if patience is not None and monitor is None:
            raise ValueError("early stopping needs a validation metric (--val-file)")
        self.run_dir = run_dir
        self.save_every = save_every
        self.keep_last = keep_last
        self.monitor = monitor
        self.check_every = check_every
        self.patience = patience
        self.index_extra = dict(index_extra or {})
        self.best_score: Optional[float] = None
        self.best_epoch: Optional[int] = None
        self.bad_checks = 0
        self.stopped_early = False
        self.last_epoch: Optional[int] = None

    # ---- resumable state --------------------------------------------------------------
    def state_dict(self) -> Dict[str, Any]:
        return {"best_score": self.best_score, "best_epoch": self.best_epoch, "bad_checks": self.bad_checks}

    def load_state_dict(self, state_dict: Dict[str, Any]) -> None:
        # resumed elsewhere (no best.ckpt here): the best so far is found again from this run's epochs
        if os.path.isfile(os.path.join(self.run_dir, BEST)):
            self.best_score = state_dict.get("best_score")
            self.best_epoch = state_dict.get("best_epoch")
            self.bad_checks = state_dict.get("bad_checks", 0)

    # ---- hooks ------------------------------------------------------------------------
    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if trainer.sanity_checking:
            return
        epoch = self.last_epoch = trainer.current_epoch
        # every rank computes its view (no rank raises alone: that would leave the others waiting in
        # the broadcast); rank 0's decision, or its error, is what all ranks act on
        try:
            decision = self._check(trainer, epoch) + [None]
        except RuntimeError as err:
            decision = [False, False, str(err)]
        improved, stop, error = trainer.strategy.broadcast(decision)
        if error:
            raise RuntimeError(error)
        if improved:
            trainer.save_checkpoint(os.path.join(self.run_dir, BEST), weights_only=False)
        if self.keep_last != 0 and (epoch + 1) % self.save_every == 0:
            trainer.save_checkpoint(os.path.join(self.run_dir, f"epoch={epoch}.ckpt"), weights_only=False)
            if trainer.is_global_zero:
                self._prune()
        trainer.save_checkpoint(os.path.join(self.run_dir, LAST), weights_only=False)
        if stop:
            self.stopped_early = True
            trainer.should_stop = True
        if trainer.is_global_zero:
            self.write_index()

    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        trainer.save_checkpoint(os.path.join(self.run_dir, FINAL), weights_only=False)
        if trainer.is_global_zero:
            self.write_index(final={"file": FINAL, "epoch": self.last_epoch, "stopped_early": self.stopped_early})

    # ---- decisions --------------------------------------------------------------------
    def _check(self, trainer: Trainer, epoch: int) -> List[bool]:
        """``[improved, stop]`` for this epoch (rank 0's view; broadcast by the caller)."""
        if self.monitor is None or (epoch + 1) % self.check_every != 0:
            return [False, False]
        if self.monitor not in trainer.callback_metrics:
            raise RuntimeError(f"the validation metric {self.monitor} was not logged in epoch {epoch} "
                               f"(logged: {', '.join(sorted(trainer.callback_metrics))})")
        score = float(trainer.callback_metrics[self.monitor])
        improved = math.isfinite(score) and (self.best_score is None or score < self.best_score)
        if improved:
            self.best_score, self.best_epoch, self.bad_checks = score, epoch, 0
        else:
            self.bad_checks += 1
        return [improved, self.patience is not None and self.bad_checks >= self.patience]

    def _prune(self) -> None:
        if self.keep_last < 0:
            return
        for path in epoch_checkpoints(self.run_dir)[: -self.keep_last]:
            os.remove(path)

    def write_index(self, **extra: Any) -> Dict[str, Any]:
        best = None
        if self.best_epoch is not None:
            best = {"file": BEST, "epoch": self.best_epoch, "monitor": self.monitor, "score": self.best_score}
        epochs = [{"file": os.path.basename(p), "epoch": epoch_of(p)} for p in epoch_checkpoints(self.run_dir)]
        return update_index(self.run_dir, last=LAST, best=best, epochs=epochs,
                            policy={"save_every": self.save_every, "keep_last": self.keep_last,
                                    "monitor": self.monitor, "check_every": self.check_every,
                                    "early_stop_patience": self.patience}, **{**self.index_extra, **extra})
