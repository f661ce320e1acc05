"""How many threads a CPU process gives PyTorch (``--num-threads`` of ``train.py`` and ``eval.py``).

The rule, in order:

1. ``--num-threads N`` (N > 0): N threads.
2. else the environment's ``OMP_NUM_THREADS`` (a positive integer; of a nested list such as
   ``4,2`` the first level): that many.
3. else all the cores this process may run on (``os.sched_getaffinity``, which follows
   ``taskset``, cgroup cpusets and SLURM's binding), as PyTorch itself does.

Nothing is subtracted for DataLoader workers: they are separate processes and the operating
system shares the cores among them. Nothing is sampled by default either: an earlier version
counted the cores idle during half a second at start-up, and a short burst of another process
then kept a whole run on one core of an idle machine. On a machine shared with other jobs,
give ``--num-threads`` (or ``OMP_NUM_THREADS``) yourself: fewer threads than cores avoids
waiting at every operator's barrier for a thread that another job has descheduled.

``--num-threads idle`` (opt-in) uses the cores that other processes leave idle, measured over
half a second from ``/proc/stat`` (elsewhere: the 1-minute load average), at least 1; training
measures again at the start of every epoch (:class:`espnet.training.idle_threads.IdleThreads`),
so a burst of load at start-up costs at most one epoch.
"""

import argparse
import os
import time
from typing import Callable, Dict, Mapping, Optional, Tuple, Union

OMP_VARIABLE = "OMP_NUM_THREADS"
IDLE = "idle"
Threads = Union[int, str]  # a number of threads (0 = default) or IDLE


def num_threads_flag(value: str) -> Threads:
    """``--num-threads`` as argparse reads it: an integer (range-checked by the caller) or ``idle``."""
    if value.strip().lower() == IDLE:
        return IDLE
    try:
        return int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of threads or 'idle', got {value!r}") from None


def available_cores() -> int:
    """Cores this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def omp_num_threads(environ: Mapping[str, str]) -> Optional[int]:
    """Threads that ``OMP_NUM_THREADS`` in ``environ`` asks for (``None`` when unset or empty).

    Raises:
        ValueError: the value is not a positive integer (or a list of them, ``4,2``).
    """
    value = environ.get(OMP_VARIABLE, "").strip()
    if not value:
        return None
    first = value.split(",")[0].strip()
    if not first.isdigit() or int(first) < 1:
        raise ValueError(f"environment variable {OMP_VARIABLE}={value!r} is not a positive number of threads")
    return int(first)


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


def measure_busy_cores(seconds: float = 0.5) -> float:
    """Busy cores (of those this process may use) over the next ``seconds``, from ``/proc/stat``;
    where there is none, the 1-minute load average (0 where the system has none either)."""
    if not os.path.isfile("/proc/stat"):
        return os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
    cpus = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else None
    with open("/proc/stat") as handle:
        first = parse_proc_stat(handle.read())
    time.sleep(seconds)
    with open("/proc/stat") as handle:
        second = parse_proc_stat(handle.read())
    return busy_cores(first, second, cpus if cpus is not None else first.keys())


def idle_threads(cores: int, busy: float) -> Tuple[int, str]:
    """Threads for ``--num-threads idle``: ``cores - round(busy)``, at least 1, and why."""
    threads = max(1, cores - int(round(busy)))
    return threads, f"--num-threads idle: {cores} cores, {busy:.1f} busy with other work"


def choose_num_threads(requested: Threads, environ: Optional[Mapping[str, str]] = None,
                       cores: Optional[int] = None, busy: Optional[float] = None) -> Tuple[int, str]:
    """Intra-op threads for a CPU run and why (the rule of this module's docstring).

    Args:
        requested: ``--num-threads``; a positive value is used as it is, 0 means the default,
            ``idle`` the cores other work leaves idle.
        environ: Environment to read ``OMP_NUM_THREADS`` from (default: ``os.environ``).
        cores: Cores this process may run on (default: :func:`available_cores`).
        busy: For ``idle``: cores busy with other work (default: :func:`measure_busy_cores`).

    Returns:
        ``(threads, reason)``, e.g. ``(2, "all 2 available cores")``.
    """
    cores = available_cores() if cores is None else cores
    if requested == IDLE:
        return idle_threads(cores, measure_busy_cores() if busy is None else busy)
    if requested < 0:
        raise ValueError(f"--num-threads must be >= 0 (0 = default), got {requested}")
    if requested > 0:
        return requested, "--num-threads"
    omp = omp_num_threads(os.environ if environ is None else environ)
    if omp is not None:
        return omp, f"{OMP_VARIABLE}"
    return cores, f"all {cores} available cores"


def apply_num_threads(requested: Threads, log: Callable[[str], None] = print) -> int:
    """``torch.set_num_threads`` as :func:`choose_num_threads` says, and print the choice."""
    import torch

    threads, reason = choose_num_threads(requested)
    torch.set_num_threads(threads)
    log(f"CPU threads: {threads} ({reason})")
    return threads
