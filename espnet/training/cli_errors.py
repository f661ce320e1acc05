"""One clear line for every failure of a command-line entry point.

``train.py``, ``eval.py`` and ``preparation/prepare_dataset.py`` run their work through
:func:`run_cli`: an exception becomes ``error: <culprit>: <what is wrong>`` on stderr and an
exit status, and the Python traceback is printed only with ``--debug``.

Exit status: 2 for bad input (files, flags, data: ``ValueError``, ``FileNotFoundError``,
``ImportError``, ...), 130 for Ctrl+C, the ``exit_code`` of an exception that carries one
(e.g. a non-finite loss: 1), and 1 for anything else (a bug; its line says that ``--debug``
shows the traceback).

Errors raised inside a DataLoader worker reach the main process re-raised with the worker's
whole traceback embedded in the message; :func:`unwrap_worker_message` recovers the original
message, so they read like errors of the main process.
"""

import re
import sys
import traceback
from typing import Callable, List, Optional, Tuple

INPUT_ERRORS = (ValueError, FileNotFoundError, NotADirectoryError, IsADirectoryError, PermissionError,
                NotImplementedError, ImportError)
EXIT_BAD_INPUT = 2
EXIT_FAILED = 1
EXIT_SIGINT = 130

_WORKER_HEADER = re.compile(r"^Caught (\w+) in DataLoader worker process \d+\.\nOriginal ", re.S)
_TRACEBACK_START = "Traceback (most recent call last):"


def unwrap_worker_message(message: str) -> Optional[Tuple[str, str]]:
    """``(exception type name, original message)`` of an error re-raised from a DataLoader
    worker (``"Caught ValueError in DataLoader worker process 0.\\nOriginal Traceback ..."``),
    or ``None`` for any other message."""
    if not _WORKER_HEADER.match(message):
        return None
    lines = message.splitlines()
    starts = [i for i, line in enumerate(lines) if line.strip().endswith(_TRACEBACK_START)]
    if not starts:
        return None
    i = starts[-1] + 1  # the last traceback is the exception that reached the worker loop
    while i < len(lines) and (lines[i].startswith(" ") or not lines[i].strip()):
        i += 1
    final = "\n".join(lines[i:]).strip()
    name, sep, text = final.partition(": ")
    return name.rsplit(".", 1)[-1], (text if sep else "").strip()


def describe(err: BaseException) -> Tuple[List[str], int]:
    """The stderr lines (details first, the ``error:`` line last) and exit status for ``err``."""
    details = list(getattr(err, "details", None) or [])
    message = str(err)
    type_name = type(err).__name__
    unwrapped = unwrap_worker_message(message)
    if unwrapped is not None:
        type_name, message = unwrapped
        message = f"{message} (raised in a DataLoader worker)"
    if isinstance(getattr(err, "exit_code", None), int):  # an error that knows its culprit and status
        return details + [f"error: {message}"], err.exit_code
    if isinstance(err, INPUT_ERRORS):
        filename = getattr(err, "filename", None)
        if isinstance(err, OSError) and filename and getattr(err, "strerror", None) and unwrapped is None:
            message = f"{filename}: {err.strerror}"
        return details + [f"error: {message}"], EXIT_BAD_INPUT
    first = message.strip().splitlines()[0] if message.strip() else "(no message)"
    return details + [f"error: {type_name}: {first} (run with --debug for the traceback)"], EXIT_FAILED


def run_cli(body: Callable[[], int], debug: bool = False) -> int:
    """Run ``body`` (returning an exit status) and turn any exception into one ``error:``
    line on stderr and an exit status; ``debug`` also prints the traceback.
    ``SystemExit`` (argparse, an explicit exit) passes through unchanged."""
    try:
        return body()
    except KeyboardInterrupt:
        if debug:
            traceback.print_exc()
        print("error: interrupted (Ctrl+C / SIGINT)", file=sys.stderr)
        return EXIT_SIGINT
    except Exception as err:  # noqa: BLE001 - every failure is reported, as one line
        if debug:
            traceback.print_exc()
        lines, code = describe(err)
        print("\n".join(lines), file=sys.stderr)
        return code
