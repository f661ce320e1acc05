"""How many threads a CPU process gives PyTorch (``--num-threads`` of ``train.py`` and ``eval.py``).

The rule, in order:

1. ``--num-threads N`` (N > 0): N threads.
2. else the environment's ``OMP_NUM_THREADS`` (a positive integer; of a nested list such as
   ``4,2`` the first level): that many.
3. else all the cores this process may run on (``os.sched_getaffinity``, which follows
   ``taskset``, cgroup cpusets and SLURM's binding), as PyTorch itself does.

Nothing is subtracted for DataLoader workers: they are separate processes and the operating
system shares the cores among them. Nothing is sampled at start-up either: an earlier version
counted the cores idle during half a second, and a short burst of another process then kept
a whole run on one core of an idle machine. On a machine shared with other jobs, give
``--num-threads`` (or ``OMP_NUM_THREADS``) yourself: fewer threads than cores avoids waiting
at every operator's barrier for a thread that another job has descheduled.
"""

import os
from typing import Callable, Mapping, Optional, Tuple

import torch

OMP_VARIABLE = "OMP_NUM_THREADS"


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


def choose_num_threads(requested: int, environ: Optional[Mapping[str, str]] = None,
                       cores: Optional[int] = None) -> Tuple[int, str]:
    """Intra-op threads for a CPU run and why (the rule of this module's docstring).

    Args:
        requested: ``--num-threads``; a positive value is used as it is, 0 means the default.
        environ: Environment to read ``OMP_NUM_THREADS`` from (default: ``os.environ``).
        cores: Cores this process may run on (default: :func:`available_cores`).

    Returns:
        ``(threads, reason)``, e.g. ``(2, "all 2 available cores")``.
    """
    if requested < 0:
        raise ValueError(f"--num-threads must be >= 0 (0 = default), got {requested}")
    if requested > 0:
        return requested, "--num-threads"
    omp = omp_num_threads(os.environ if environ is None else environ)
    if omp is not None:
        return omp, f"{OMP_VARIABLE}"
    cores = available_cores() if cores is None else cores
    return cores, f"all {cores} available cores"


def apply_num_threads(requested: int, log: Callable[[str], None] = print) -> int:
    """``torch.set_num_threads`` as :func:`choose_num_threads` says, and print the choice."""
    threads, reason = choose_num_threads(requested)
    torch.set_num_threads(threads)
    log(f"CPU threads: {threads} ({reason})")
    return threads
