"""Per-step throughput (input frames per second) and memory in the progress bar."""

import os
import resource
import time
from typing import Any, Dict, Optional

import torch
from pytorch_lightning import Callback, LightningModule, Trainer

VIDEO_RATE = 25.0  # frames per second of the video stream and of the label lists' input_length
AUDIO_RATE = 16000  # samples per second


def batch_frames(batch: Dict[str, Any]) -> float:
    """Input duration of a batch in 25 Hz frames: the video frames, else audio samples / 640."""
    if "video_lengths" in batch:
        return float(batch["video_lengths"].sum())
    if "audio_lengths" in batch:
        return float(batch["audio_lengths"].sum()) * VIDEO_RATE / AUDIO_RATE
    raise KeyError("the batch has neither video_lengths nor audio_lengths")


def process_rss_gb() -> float:
    """Resident memory of this process in GiB (``/proc/self/statm``; elsewhere the peak RSS)."""
    try:
        with open("/proc/self/statm", encoding="ascii") as handle:
            pages = int(handle.read().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / 2**30
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux


class ThroughputMonitor(Callback):
    """Logs, for every training batch of this process, ``frames_per_s`` (25 Hz input frames
    divided by the wall time since the previous batch ended, data loading included) and
    ``cuda_mem_gb`` (peak CUDA memory allocated during the batch) on a GPU, else ``rss_gb``
    (the process's resident memory). Both show in the progress bar and go to the logger
    (every ``log_every_n_steps``)."""

    def __init__(self) -> None:
        self._start: Optional[float] = None

    def on_train_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._start = time.perf_counter()

    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, outputs, batch, batch_idx) -> None:
        now = time.perf_counter()
        seconds = max(now - (self._start if self._start is not None else now), 1e-9)
        self._start = now
        values = {"frames_per_s": batch_frames(batch) / seconds}
        if pl_module.device.type == "cuda":
            values["cuda_mem_gb"] = torch.cuda.max_memory_allocated(pl_module.device) / 2**30
            torch.cuda.reset_peak_memory_stats(pl_module.device)
        else:
            values["rss_gb"] = process_rss_gb()
        for name, value in values.items():
            pl_module.log(name, value, on_step=True, on_epoch=False, prog_bar=True, batch_size=1)
