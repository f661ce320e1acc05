"""``--num-threads idle`` during training: the idle cores are measured again at the start of
every epoch after the first (whose threads ``apply_num_threads`` chose at start-up), so a burst
of other work when training starts, or a job that ends later, changes the threads for one
epoch at most. Each measurement takes half a second, while this process waits."""

from typing import Callable, Optional

import torch
from pytorch_lightning.callbacks import Callback

from espnet.training.cpu_threads import available_cores, idle_threads, measure_busy_cores


class IdleThreads(Callback):
    """Set ``torch.set_num_threads`` to the idle cores at each epoch start but the first.

    Args:
        measure: Busy cores now (default: :func:`~espnet.training.cpu_threads.measure_busy_cores`).
        cores: Cores this process may run on (default: all available).
        log: Where the line about a change goes.
    """

    def __init__(self, measure: Callable[[], float] = measure_busy_cores, cores: Optional[int] = None,
                 log: Callable[[str], None] = print) -> None:
        self.measure = measure
        self.cores = cores
        self.log = log
        self.epochs_started = 0

    def on_train_epoch_start(self, trainer=None, pl_module=None) -> None:
        self.epochs_started += 1
        if self.epochs_started == 1:  # start-up just measured
            return
        threads, reason = idle_threads(self.cores or available_cores(), self.measure())
        if threads != torch.get_num_threads():
            self.log(f"CPU threads: {torch.get_num_threads()} -> {threads} ({reason})")
            torch.set_num_threads(threads)
