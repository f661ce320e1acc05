"""Decoded clips kept in memory (``--media-cache-gb``): each mp4/wav is decoded once per run.

Decoding an mp4 with PyAV costs about as much as a small model's training step on the clip,
and training decodes every clip again in every epoch. For corpora that fit in memory the
clips are decoded once, before training, and kept as uint8 frames and float32 waveforms;
the transforms (crop, noise, masking) still run on every access, so what the model sees is
exactly what it saw without the cache.

Frames whose three colour channels are equal (grayscale mouth crops) are stored once and
handed out as a ``(T, 3, H, W)`` view of that one channel: a third of the memory, the same
values.
"""

import sys
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Dict, Optional, Sequence, Tuple

import torch

from datamodule.media import load_audio, load_video


def _compact_frames(frames: torch.Tensor) -> torch.Tensor:
    """``uint8 (T, 3, H, W)`` -> ``(T, 1, H, W)`` when the channels are equal, else unchanged."""
    if frames.size(1) == 3 and torch.equal(frames[:, 0], frames[:, 1]) and torch.equal(frames[:, 0], frames[:, 2]):
        return frames[:, :1].clone()
    return frames


def decode_clip(stream: str, path: str) -> torch.Tensor:
    """What the cache stores for one file: compacted ``uint8`` frames of a ``video`` mp4, the
    ``float32 (S, 1)`` waveform of an ``audio`` file."""
    return _compact_frames(load_video(path)) if stream == "video" else load_audio(path)


class MediaCache:
    """Decoded videos and waveforms by path, up to ``max_bytes``.

    ``video(path)`` / ``audio(path)`` return what :func:`~datamodule.media.load_video` /
    :func:`~datamodule.media.load_audio` return (``uint8 (T, 3, H, W)``, ``float32 (S, 1)``),
    from memory when the clip is held, else decoded (and kept while there is room). Clips
    are never evicted: with the random order of training, any clip is as likely to be read
    next as another, so the first ones kept are as good as any.

    Args:
        max_bytes: Memory bound of the stored tensors.
    """

    def __init__(self, max_bytes: int) -> None:
        if max_bytes < 0:
            raise ValueError(f"the media cache bound must be >= 0 bytes, got {max_bytes}")
        self.max_bytes = int(max_bytes)
        self.bytes = 0
        self._videos: Dict[str, torch.Tensor] = {}
        self._audios: Dict[str, torch.Tensor] = {}
        self.full = False  # a clip did not fit

    def __len__(self) -> int:
        return len(self._videos) + len(self._audios)

    def _keep(self, store: Dict[str, torch.Tensor], path: str, value: torch.Tensor) -> None:
        size = value.numel() * value.element_size()
        if self.bytes + size > self.max_bytes:
            self.full = True
            return
        store[path] = value
        self.bytes += size

    def add(self, stream: str, path: str, value: torch.Tensor) -> None:
        """Keep ``value`` (from :func:`decode_clip`) for ``path`` if it is not held yet and fits."""
        store = self._videos if stream == "video" else self._audios
        if path not in store:
            self._keep(store, path, value)

    def video(self, path: str) -> torch.Tensor:
        frames = self._videos.get(path)
        if frames is None:
            frames = decode_clip("video", path)
            self._keep(self._videos, path, frames)
        return frames.expand(-1, 3, -1, -1)

    def audio(self, path: str) -> torch.Tensor:
        waveform = self._audios.get(path)
        if waveform is None:
            waveform = decode_clip("audio", path)
            self._keep(self._audios, path, waveform)
        return waveform


def fill_cache(cache: MediaCache, files: Sequence[Tuple[str, str]], what: str,
               log: Callable[[str], None] = print, workers: Optional[int] = None) -> None:
    """Decode ``files`` (``(stream, path)``: ``video`` mp4s, ``audio`` wavs) into ``cache``
    until its bound is reached, and report how many fit, their size and the time taken.

    ``workers`` threads decode (default: torch's CPU threads; PyAV decodes without holding
    the GIL); the clips are kept in the order of ``files``, so the same ones fit whatever the
    number of threads. A file that cannot be decoded raises its error here."""
    start = time.perf_counter()
    before = len(cache)
    workers = max(1, workers or torch.get_num_threads())
    with ThreadPoolExecutor(workers) as pool:
        in_flight: deque = deque()
        queue = iter(files)
        while not cache.full:
            while len(in_flight) < 2 * workers:  # a few clips ahead: little decoded in vain at the bound
                item = next(queue, None)
                if item is None:
                    break
                in_flight.append((item, pool.submit(decode_clip, *item)))
            if not in_flight:
                break
            (stream, path), decoding = in_flight.popleft()
            try:
                value = decoding.result()
            except BaseException:
                for _, other in in_flight:
                    other.cancel()
                raise
            cache.add(stream, path, value)
        for _, other in in_flight:
            other.cancel()
    kept = len(cache) - before
    note = "" if kept == len(files) else f" (the bound of {cache.max_bytes / 2**30:.2f} GiB was reached: " \
        f"the other {len(files) - kept} are decoded each time they are read)"
    log(f"media cache: {what}: {kept} of {len(files)} file(s) decoded into memory, {cache.bytes / 2**20:.0f} MiB "
        f"in all, {time.perf_counter() - start:.1f} s, {workers} thread(s){note}")
    sys.stdout.flush()
