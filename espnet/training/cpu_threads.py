"""How many threads a CPU training process gives PyTorch (``--num-threads``).

PyTorch's intra-op pool defaults to one thread per core. Every operator then ends at a
barrier where all threads wait for the slowest, so when another process holds a core (a
DataLoader worker, or other jobs on a shared machine) each of the thousands of small
operators of a training step waits for a descheduled thread: on this project's 2-core
machine under a load of about 4, video training steps took several times longer with 2
threads than with 1 (``benchmarks/train_speed.py`` measures it). ``auto`` therefore uses
only the cores that are idle when training starts.
"""

import os
from typing import Callable, Optional

import torch


def available_cores() -> int:
    """Cores this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def load_average() -> float:
    """The 1-minute load average (busy cores), 0 where the system has none."""
    return os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0


def idle_cores(cores: int, load: float) -> int:
    """Cores not busy with other work: ``cores - round(load)``, at least 1."""
    return max(1, cores - int(round(load)))


def choose_num_threads(requested: int, num_workers: int = 0, cores: Optional[int] = None,
                       load: Optional[float] = None) -> int:
    """Intra-op threads for a CPU run.

    Args:
        requested: ``--num-threads``; a positive value is used as it is, 0 means auto.
        num_workers: DataLoader worker processes (each keeps a core busy while it decodes).
        cores: CPU cores (default: the ones this process may run on).
        load: Other work, in busy cores (default: the 1-minute load average).

    Returns:
        ``requested`` if positive, else the idle cores minus the workers, at least 1.
    """
    if requested < 0:
        raise ValueError(f"--num-threads must be >= 0 (0 = auto), got {requested}")
    if requested > 0:
        return requested
    if cores is None:
        cores = available_cores()
    if load is None:
        load = load_average()
    return max(1, idle_cores(cores, load) - num_workers)


def apply_num_threads(requested: int, num_workers: int, log: Callable[[str], None] = print) -> int:
    """Set ``torch.set_num_threads`` for a CPU run (see :func:`choose_num_threads`) and say so."""
    cores, load = available_cores(), load_average()  # read once: the choice and its message agree
    threads = choose_num_threads(requested, num_workers, cores, load)
    torch.set_num_threads(threads)
    how = "--num-threads" if requested > 0 else \
        f"auto: idle cores of {cores} at load {load:.1f}, minus {num_workers} DataLoader worker(s)"
    log(f"CPU threads: {threads} ({how})")
    return threads
