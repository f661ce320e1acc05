"""One training run per run directory at a time.

``train.py`` holds an exclusive ``flock`` on ``RUN/.lock`` for as long as it runs; a second
run into the same ``--exp-dir``/``--exp-name`` is refused with one line naming the
directory and the process that holds it. The kernel releases the lock when the process
ends in any way (a crash, ``kill -9``), so no lock is ever left stuck.

Under DDP the other processes of the same run (Lightning re-launches the command line with
``LOCAL_RANK`` set; ``torchrun`` sets ``RANK``) are not refused: only the process of global
rank 0 takes the lock.
"""

import os
from typing import Callable, Optional, TypeVar

T = TypeVar("T")

LOCK_NAME = ".lock"
RANK_VARIABLES = ("RANK", "LOCAL_RANK", "NODE_RANK", "SLURM_PROCID")


def is_launching_process() -> bool:
    """Whether this process is rank 0 of its run (or a run without DDP): every rank variable
    of the launchers is unset or 0."""
    return all(os.environ.get(name, "0").strip() in ("", "0") for name in RANK_VARIABLES)


class RunLock:
    """The exclusive lock of a run directory, held from :meth:`acquire` until :meth:`release`
    (or the end of the process). A context manager; on a platform without ``fcntl`` (Windows)
    nothing is locked."""

    def __init__(self, run_dir: str) -> None:
        self.run_dir = run_dir
        self.path = os.path.join(run_dir, LOCK_NAME)
        self._fd: Optional[int] = None

    def acquire(self) -> "RunLock":
        """Take the lock (creating the run directory), or raise ``ValueError`` naming the
        directory when another live process holds it. Processes of rank > 0 take nothing."""
        if not is_launching_process():
            return self
        try:
            import fcntl
        except ImportError:  # no flock on this platform
            return self
        os.makedirs(self.run_dir, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 64).decode("ascii", "replace").strip()
            os.close(fd)
            who = f"process {holder}" if holder.isdigit() else "another process"
            raise ValueError(f"--exp-dir/--exp-name {self.run_dir}: the run directory is in use by another training "
                             f"run ({who} holds {self.path}); wait for it to end, or choose another --exp-name") from None
        except OSError:
            os.close(fd)
            raise
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode("ascii"))
        self._fd = fd
        return self

    def release(self) -> None:
        """Give the lock up (closing the file releases the flock); the file stays."""
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)

    @property
    def held(self) -> bool:
        return self._fd is not None

    def __enter__(self) -> "RunLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def run_locked(run_dir: str, body: Callable[[], T]) -> T:
    """``body()`` while holding the lock of ``run_dir`` (see :class:`RunLock`)."""
    with RunLock(run_dir):
        return body()
