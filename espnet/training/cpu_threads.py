"""How many threads a CPU training process gives PyTorch (``--num-threads``).

PyTorch's intra-op pool defaults to one thread per core. Every operator then ends at a
barrier where all threads wait for the slowest, so when another process holds a core (a
DataLoader worker, or other jobs on a shared machine) each of the thousands of small
operators of a training step waits for a descheduled thread: on this project's 2-core
machine under a load of about 4, video training steps took several times longer with 2
threads than with 1 (``benchmarks/train_speed.py`` measures it). ``auto`` therefore uses
only the cores that are idle when training starts: on Linux it measures them over half a
second from ``/proc/stat`` (the 1-minute load average still counts a job that ended a minute
ago as most of a core); elsewhere it falls back to the load average.
"""

import os
import time
from typing import Callable, Dict, Optional, Tuple

import torch


def available_cores() -> int:
    """Cores this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def load_average() -> float:
    """Busy cores now: measured over half a second where ``/proc/stat`` exists, else the
    1-minute load average (0 where the system has none)."""
    measured = measured_load()
    if measured is not None:
        return measured
    return os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0


def parse_proc_stat(text: str) -> Dict[int, Tuple[int, int]]:
    """Per-CPU ``(busy, total)`` clock ticks since boot from the text of ``/proc/stat``
    (idle and iowait ticks count as not busy)."""
    ticks = {}
    for line in text.splitlines():
        name, _, rest = line.partition(" ")
        if len(name) > 3 and name.startswith("cpu") and name[3:].isdigit():
            values = [int(v) for v in rest.split()]
            total = sum(values[:8])  # user nice system idle iowait irq softirq steal (guest is inside user)
            ticks[int(name[3:])] = (total - values[3] - values[4], total)
    return ticks


def busy_cores(earlier: Dict[int, Tuple[int, int]], later: Dict[int, Tuple[int, int]], cpus) -> float:
    """Cores' worth of work done on ``cpus`` between two :func:`parse_proc_stat` readings."""
    seen = [c for c in cpus if c in earlier and c in later]
    busy = sum(later[c][0] - earlier[c][0] for c in seen)
    total = sum(later[c][1] - earlier[c][1] for c in seen)
    return 0.0 if total <= 0 else busy / total * len(seen)


def measured_load(seconds: float = 0.5) -> Optional[float]:
    """Busy cores (of those this process may use) measured over ``seconds`` from
    ``/proc/stat``; None where there is no ``/proc/stat``."""
    if not os.path.isfile("/proc/stat"):
        return None
    cpus = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else None
    with open("/proc/stat") as handle:
        first = parse_proc_stat(handle.read())
    time.sleep(seconds)
    with open("/proc/stat") as handle:
        second = parse_proc_stat(handle.read())
    return busy_cores(first, second, cpus if cpus is not None else first.keys())


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
        load: Other work, in busy cores (default: :func:`load_average`).

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
        f"auto: idle cores of {cores}, {load:.1f} busy, minus {num_workers} DataLoader worker(s)"
    log(f"CPU threads: {threads} ({how})")
    return threads
