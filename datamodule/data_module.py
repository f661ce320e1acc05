"""LightningDataModule: label CSVs -> bucketed, padded batches."""

import os
import signal
from typing import AbstractSet, Any, Dict, Optional, Sequence

import torch
from pytorch_lightning import LightningDataModule

from datamodule.av_dataset import AVDataset
from datamodule.collate import collate_pad
from datamodule.media_cache import MediaCache, fill_cache
from datamodule.noise import load_noise, resolve_noise_file
from datamodule.samplers import BucketBatchSampler
from datamodule.snr_levels import TRAIN_SNRS
from datamodule.transforms import AudioTransform, VideoTransform


def label_path(root_dir: str, name: str) -> str:
    """``name`` itself when it is an existing path, else ``root_dir/labels/name``."""
    if os.path.isabs(name) or os.path.isfile(name):
        return name
    return os.path.join(root_dir, "labels", name)


def build_dataset(root_dir: str, file: str, subset: str, modality: str, noise: Optional[torch.Tensor] = None,
                  snr_target: Optional[float] = None, seed: Optional[int] = None,
                  augment_seed: Optional[int] = None, skip_lines: AbstractSet[int] = frozenset(),
                  audio_utterance_norm: bool = True, media_cache: Optional[MediaCache] = None,
                  modality_dropout: float = 0.0, drop_streams: AbstractSet[str] = frozenset(),
                  train_snrs: Sequence[float] = TRAIN_SNRS) -> AVDataset:
    """Dataset of one split with the legacy transforms of that split. ``seed`` keys test-time
    noise by utterance; ``augment_seed`` keys training augmentation by (epoch, utterance);
    ``skip_lines`` are label-list lines to leave out; ``audio_utterance_norm``: see
    :class:`AudioTransform` (the model's ``audio_utterance_norm``); ``media_cache``: decoded
    clips kept in memory (see :class:`MediaCache`); ``modality_dropout``, ``drop_streams``:
    items without one of their streams (see :class:`AVDataset`); ``train_snrs``: the training
    babble's SNRs (``--train-snrs``, see :class:`AudioTransform`)."""
    return AVDataset(
        root_dir=root_dir,
        label_path=label_path(root_dir, file),
        modality=modality,
        video_transform=VideoTransform(subset),
        audio_transform=AudioTransform(subset, noise=noise, snr_target=snr_target, seed=seed,
                                       utterance_norm=audio_utterance_norm, train_snrs=train_snrs),
        seed=augment_seed,
        skip_lines=skip_lines,
        media_cache=media_cache,
        modality_dropout=modality_dropout,
        drop_streams=drop_streams,
    )


def ignore_stop_signals(worker_id: int) -> None:
    """DataLoader ``worker_init_fn``: workers leave SIGINT/SIGTERM to the main process, which
    stops training cleanly (Ctrl+C reaches every process of the terminal's group)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


class DataModule(LightningDataModule):
    """Train/val loaders for ``train.py``.

    Training batches are keyed by (epoch, utterance) so that augmentation is reproducible
    (see :class:`AVDataset`); the checkpoint records the epoch and how many of its batches
    were trained on (:meth:`state_dict`), so a resumed run continues with the next batch.

    Args:
        root_dir, train_file, val_file: Data location (label files under ``root_dir/labels``).
        modality: ``video``, ``audio`` or ``audiovisual``.
        max_frames: Frame budget per batch.
        train_num_buckets: Length buckets for training batches.
        num_workers: DataLoader workers.
        noise_file: Babble/noise wav for training augmentation (default: ``ROOT/babble.wav``
            when present, else the built-in babble).
        seed: Base seed of the batch order and the augmentation.
        skip_lines: Label-list lines to leave out, by file name as given (``--skip-invalid``).
        audio_utterance_norm: Layer-norm audio over each utterance (the model's
            ``audio_utterance_norm``: the legacy 1D-ResNet wants it, pretrained audio
            frontends get the recorded level).
        media_cache_gb: Decode the clips of the training and validation lists once, when
            their loaders are built, and keep up to this many GiB of them in memory
            (:class:`~datamodule.media_cache.MediaCache`; DataLoader workers started later
            share it); 0 decodes every clip each time it is read.
        modality_dropout: Audio-visual training: the probability that a training item comes
            without its video or its audio (``--modality-dropout``; see :class:`AVDataset`).
        train_snrs: SNRs (dB) of the training babble, ``CLEAN_SNR`` = none (``--train-snrs``).
    """

    def __init__(self, root_dir: str, train_file: str, val_file: Optional[str], modality: str,
                 max_frames: int = 1600, train_num_buckets: int = 400, num_workers: int = 0,
                 noise_file: Optional[str] = None, seed: int = 42,
                 skip_lines: Optional[Dict[str, AbstractSet[int]]] = None, audio_utterance_norm: bool = True,
                 media_cache_gb: float = 0.0, modality_dropout: float = 0.0,
                 train_snrs: Sequence[float] = TRAIN_SNRS) -> None:
        super().__init__()
        self.root_dir = root_dir
        self.train_file = train_file
        self.val_file = val_file
        self.modality = modality
        self.max_frames = max_frames
        self.train_num_buckets = train_num_buckets
        self.num_workers = num_workers
        self.noise_file = noise_file
        self.seed = seed
        self.skip_lines = skip_lines or {}
        self.audio_utterance_norm = audio_utterance_norm
        self.train_sampler: Optional[BucketBatchSampler] = None
        if media_cache_gb < 0:
            raise ValueError(f"--media-cache-gb must be >= 0, got {media_cache_gb}")
        self.media_cache = MediaCache(int(media_cache_gb * 2**30)) if media_cache_gb > 0 else None
        self.modality_dropout = modality_dropout
        self.train_snrs = tuple(train_snrs)
        self._resume: Optional[Dict[str, int]] = None

    def _cached(self, dataset: AVDataset) -> AVDataset:
        """``dataset`` with its clips decoded into the media cache (when there is one)."""
        if self.media_cache is not None:
            fill_cache(self.media_cache, dataset.media_files(), dataset.label_path)
        return dataset

    def _loader(self, dataset: AVDataset, sampler: BucketBatchSampler) -> torch.utils.data.DataLoader:
        return torch.utils.data.DataLoader(
            dataset,
            batch_sampler=sampler,
            collate_fn=collate_pad,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
            worker_init_fn=ignore_stop_signals if self.num_workers > 0 else None,
        )

    def _rank_world(self):
        trainer = getattr(self, "trainer", None)
        if trainer is None:
            return 0, 1
        return trainer.global_rank, trainer.world_size

    def train_dataloader(self) -> torch.utils.data.DataLoader:
        noise = None
        if self.modality != "video":
            noise = load_noise(resolve_noise_file(self.root_dir, self.noise_file))
        dataset = self._cached(build_dataset(
            self.root_dir, self.train_file, "train", self.modality, noise=noise, augment_seed=self.seed,
            skip_lines=self.skip_lines.get(self.train_file, frozenset()), audio_utterance_norm=self.audio_utterance_norm,
            media_cache=self.media_cache, modality_dropout=self.modality_dropout, train_snrs=self.train_snrs))
        rank, world = self._rank_world()
        self.train_sampler = BucketBatchSampler(
            dataset.input_lengths, self.max_frames, self.train_num_buckets, shuffle=True,
            seed=self.seed, source=dataset.label_path, rank=rank, world_size=world, keyed=True,
        )
        self._note_left_out(self.train_sampler, dataset.label_path, rank, world)
        if self._resume is not None:
            self.train_sampler.resume_at(self._resume["epoch"], self._resume["start"])
            self._resume = None
        return self._loader(dataset, self.train_sampler)

    def val_dataloader(self):
        if not self.val_file:
            return []
        dataset = self._cached(build_dataset(self.root_dir, self.val_file, "val", self.modality,
                                             skip_lines=self.skip_lines.get(self.val_file, frozenset()),
                                             audio_utterance_norm=self.audio_utterance_norm,
                                             media_cache=self.media_cache))
        rank, world = self._rank_world()
        sampler = BucketBatchSampler(dataset.input_lengths, self.max_frames, 1, shuffle=False,
                                     source=dataset.label_path, rank=rank, world_size=world)
        self._note_left_out(sampler, dataset.label_path, rank, world)
        return self._loader(dataset, sampler)

    @staticmethod
    def _note_left_out(sampler: BucketBatchSampler, label_path: str, rank: int, world: int) -> None:
        """Say (once, on rank 0) when batches had to be left out to give the ranks equal counts."""
        if sampler.left_out and rank == 0:
            print(f"note: {label_path}: {sampler.left_out} single-utterance batch(es) left out so that the "
                  f"{world} ranks get the same number of batches (each batch holds one utterance: raise "
                  f"--max-frames or use fewer processes)")

    def state_dict(self) -> Dict[str, Any]:
        """Where training stands in the batch order: ``{"train_sampler": {"epoch", "start"}}``
        (at the end of an epoch: the next epoch, from its first batch)."""
        trainer = getattr(self, "trainer", None)
        if self.train_sampler is None or trainer is None:
            return {}
        epoch = trainer.current_epoch
        done = trainer.fit_loop.epoch_loop.batch_progress.current.processed
        if done >= len(self.train_sampler):
            epoch, done = epoch + 1, 0
        return {"train_sampler": {"epoch": epoch, "start": done}}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        self._resume = state.get("train_sampler")
