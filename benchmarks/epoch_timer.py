"""Run a ``train.py`` and record how long each training epoch took and how many frames it saw.

    python benchmarks/epoch_timer.py OUT.json path/to/train.py [train.py flags ...]

Used by ``benchmarks/train_speed.py`` to time this checkout's ``train.py`` and an older one's
in exactly the same way: the script is run as ``__main__`` with one extra Lightning callback
added to every ``Trainer`` it builds. The callback writes ``OUT.json`` after each epoch:
``{"epochs": [{"epoch", "seconds", "frames", "batches"}, ...], "exit_code"}``, where
``seconds`` runs from the start of the epoch (before its first batch is loaded) to the end of
its last training batch (validation and checkpoint writing are not counted), ``cpu_seconds``
is the CPU time the process spent in that span (less sensitive than the wall time to other
jobs on a shared machine; DataLoader worker processes are not included) and ``frames``
counts 25 Hz input frames (video frames, else audio samples / 640).
"""

import json
import os
import runpy
import sys
import time
from typing import Any, Dict, List

VIDEO_RATE, AUDIO_RATE = 25.0, 16000


def batch_frames(batch: Dict[str, Any]) -> float:
    """25 Hz input frames of a collated batch (this file must not import the timed code)."""
    if "video_lengths" in batch:
        return float(batch["video_lengths"].sum())
    return float(batch["audio_lengths"].sum()) * VIDEO_RATE / AUDIO_RATE


def cpu_seconds() -> float:
    """CPU time of this process (all its threads), in seconds."""
    return time.process_time()


def main() -> int:
    if len(sys.argv) < 3:
        print(__doc__, file=sys.stderr)
        return 2
    out_path, script, flags = sys.argv[1], os.path.abspath(sys.argv[2]), sys.argv[3:]
    import pytorch_lightning as pl

    records: List[Dict[str, float]] = []
    result: Dict[str, Any] = {"script": script, "epochs": records, "exit_code": None}

    def write() -> None:
        with open(out_path, "w") as handle:
            json.dump(result, handle, indent=2)

    class EpochTimer(pl.Callback):
        def on_train_epoch_start(self, trainer, module) -> None:
            self.start, self.end, self.frames, self.batches = time.perf_counter(), None, 0.0, 0
            self.cpu_start = self.cpu_end = cpu_seconds()

        def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
            self.end, self.cpu_end = time.perf_counter(), cpu_seconds()
            self.frames += batch_frames(batch)
            self.batches += 1

        def on_train_epoch_end(self, trainer, module) -> None:
            if self.end is not None:
                records.append({"epoch": trainer.current_epoch, "seconds": self.end - self.start,
                                "cpu_seconds": self.cpu_end - self.cpu_start, "frames": self.frames,
                                "batches": self.batches})
                write()

    build = pl.Trainer.__init__

    def with_timer(self, *args, callbacks=None, **kwargs):
        build(self, *args, callbacks=list(callbacks or []) + [EpochTimer()], **kwargs)

    pl.Trainer.__init__ = with_timer
    sys.argv = [script, *flags]
    sys.path.insert(0, os.path.dirname(script))
    try:
        runpy.run_path(script, run_name="__main__")
        code = 0
    except SystemExit as stop:
        code = stop.code if isinstance(stop.code, int) else (0 if stop.code is None else 1)
    result["exit_code"] = code
    write()
    return code


if __name__ == "__main__":
    sys.exit(main())
