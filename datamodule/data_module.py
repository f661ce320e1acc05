"""LightningDataModule: label CSVs -> bucketed, padded batches."""

import os
from typing import Optional

import torch
from pytorch_lightning import LightningDataModule

from datamodule.av_dataset import AVDataset
from datamodule.collate import collate_pad
from datamodule.noise import load_noise, resolve_noise_file
from datamodule.samplers import BucketBatchSampler
from datamodule.transforms import AudioTransform, VideoTransform


def label_path(root_dir: str, name: str) -> str:
    """``name`` itself when it is an existing path, else ``root_dir/labels/name``."""
    if os.path.isabs(name) or os.path.isfile(name):
        return name
    return os.path.join(root_dir, "labels", name)


def build_dataset(root_dir: str, file: str, subset: str, modality: str, noise: Optional[torch.Tensor] = None,
                  snr_target: Optional[float] = None, seed: Optional[int] = None,
                  audio_utterance_norm: bool = True) -> AVDataset:
    """Dataset of one split with the legacy transforms of that split;
    ``audio_utterance_norm``: see :class:`AudioTransform` (the model's
    ``audio_utterance_norm``)."""
    return AVDataset(
        root_dir=root_dir,
        label_path=label_path(root_dir, file),
        modality=modality,
        video_transform=VideoTransform(subset),
        audio_transform=AudioTransform(subset, noise=noise, snr_target=snr_target, seed=seed,
                                       utterance_norm=audio_utterance_norm),
    )


class DataModule(LightningDataModule):
    """Train/val loaders for ``train.py``.

    Args:
        root_dir, train_file, val_file: Data location (label files under ``root_dir/labels``).
        modality: ``video``, ``audio`` or ``audiovisual``.
        max_frames: Frame budget per batch.
        train_num_buckets: Length buckets for training batches.
        num_workers: DataLoader workers.
        noise_file: Babble/noise wav for training augmentation (default: ``ROOT/babble.wav``
            when present, else the built-in babble).
        seed: Base seed of the batch order.
        audio_utterance_norm: Layer-norm audio over each utterance (the model's
            ``audio_utterance_norm``: the legacy 1D-ResNet wants it, pretrained audio
            frontends get the recorded level).
    """

    def __init__(self, root_dir: str, train_file: str, val_file: Optional[str], modality: str,
                 max_frames: int = 1600, train_num_buckets: int = 400, num_workers: int = 0,
                 noise_file: Optional[str] = None, seed: int = 42, audio_utterance_norm: bool = True) -> None:
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
        self.audio_utterance_norm = audio_utterance_norm
        self.train_sampler: Optional[BucketBatchSampler] = None

    def _loader(self, dataset: AVDataset, sampler: BucketBatchSampler) -> torch.utils.data.DataLoader:
        return torch.utils.data.DataLoader(
            dataset,
            batch_sampler=sampler,
            collate_fn=collate_pad,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
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
        dataset = build_dataset(self.root_dir, self.train_file, "train", self.modality, noise=noise,
                                audio_utterance_norm=self.audio_utterance_norm)
        rank, world = self._rank_world()
        self.train_sampler = BucketBatchSampler(
            dataset.input_lengths, self.max_frames, self.train_num_buckets, shuffle=True,
            seed=self.seed, source=dataset.label_path, rank=rank, world_size=world,
        )
        return self._loader(dataset, self.train_sampler)

    def val_dataloader(self):
        if not self.val_file:
            return []
        dataset = build_dataset(self.root_dir, self.val_file, "val", self.modality,
                                audio_utterance_norm=self.audio_utterance_norm)
        rank, world = self._rank_world()
        sampler = BucketBatchSampler(dataset.input_lengths, self.max_frames, 1, shuffle=False,
                                     source=dataset.label_path, rank=rank, world_size=world)
        return self._loader(dataset, sampler)
