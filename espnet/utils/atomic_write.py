"""Files that a later step reads are written beside their destination and renamed into
place, so an interrupted write (a crash, SIGKILL, a full disk) never leaves a truncated
file under the final name: readers see the old file or the new one, nothing in between."""

import contextlib
import json
import os
import tempfile
from typing import IO, Any, Iterator


def current_umask() -> int:
    """The process's file-creation mask (read by setting it and back: there is no getter)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_open(path: str, mode: str = "w", encoding: str = "utf8") -> Iterator[IO]:
    """``open(path, mode)`` for writing, but the data goes to a hidden temporary file in the
    same directory that replaces ``path`` (``os.replace``) only when the block ends without
    an exception; on an exception the temporary file is removed and ``path`` is untouched.

    Args:
        path: Destination file; its directory must exist.
        mode: ``"w"`` (text) or ``"wb"`` (bytes).
        encoding: Text encoding (text mode only).
    """
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_open writes whole files: mode 'w' or 'wb', got {mode!r}")
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, mode, **({} if "b" in mode else {"encoding": encoding})) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        # mkstemp creates the file 0600; give it the permissions a plain open() would
        os.chmod(tmp, 0o666 & ~current_umask())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)
        raise


def atomic_torch_save(obj: Any, path: str) -> None:
    """``torch.save(obj, path)`` through :func:`atomic_open`."""
    import torch

    with atomic_open(path, "wb") as handle:
        torch.save(obj, handle)


def atomic_json_dump(obj: Any, path: str, **kwargs: Any) -> None:
    """``json.dump(obj, ...)`` to ``path`` through :func:`atomic_open`; NaN and infinity are
    refused (``allow_nan=False``: they are not JSON, and a reader would fail on them)."""
    kwargs.setdefault("indent", 2)
    kwargs.setdefault("allow_nan", False)
    text = json.dumps(obj, **kwargs)  # serialise first: a ValueError leaves nothing behind
    with atomic_open(path, "w") as handle:
        handle.write(text)
        handle.write("\n")
