"""Audio/visual dataset over a label CSV."""

import os
from typing import AbstractSet, Callable, Dict, Optional, Tuple, Union

import torch

from datamodule.label_list import read_label_list
from datamodule.media import SAMPLE_RATE, VIDEO_FPS, load_audio, load_video
from datamodule.seeding import keyed_generator

SAMPLES_PER_FRAME = SAMPLE_RATE // VIDEO_FPS  # 16 kHz audio samples per 25 fps video frame
AV_TOLERANCE_SECONDS = 0.1


def cut_or_pad(data: torch.Tensor, size: int) -> torch.Tensor:
    """Trim or zero-pad ``data`` ``(S, C)`` along time to ``size``."""
    if data.size(0) < size:
        return torch.nn.functional.pad(data, (0, 0, 0, size - data.size(0)))
    return data[:size]


class AVDataset(torch.utils.data.Dataset):
    """Items ``{"video": (T, 1, 88, 88)?, "audio": (S, 1)?, "target": (L,), "text": str | None,
    "idx": int, "path": str}``.

    ``text`` is the label list's transcript column (``None`` when the line has none; the
    training module / evaluation then recover it from the SentencePiece ids). Decoders
    with their own tokenizer (``--decoder llama`` / ``whisper-decoder``) train on it.
    ``path`` is the utterance's media file (named in training errors).

    Media lives at ``root_dir/dataset/rel_path`` (the ``.mp4``); audio is the ``.wav``
    next to it. With both modalities the two must cover the same time span: a difference
    above ``av_tolerance`` seconds is an error naming the file; within it the audio is
    cut/padded to ``640 * T`` samples. Transforms (noise included) apply per stream.

    An item is fetched by its index, or by an ``(epoch, index)`` key (what a keyed
    :class:`~datamodule.samplers.BucketBatchSampler` yields): with a ``seed``, the random
    transforms of that item then draw from a generator seeded with (``seed``, epoch, index),
    so augmentation does not depend on workers, their order, or an interrupted run.

    Args:
        root_dir: Dataset root.
        label_path: Label CSV.
        modality: ``video``, ``audio`` or ``audiovisual``.
        video_transform: ``(frames, generator) -> tensor``.
        audio_transform: ``(waveform, idx, generator) -> tensor`` (the index keys reproducible
            test noise).
        av_tolerance: Allowed audio/video duration mismatch in seconds.
        seed: Base seed of the keyed augmentation (``None``: global generators).
        skip_lines: Line numbers of the label list to leave out (``--skip-invalid``).
    """

    def __init__(
        self,
        root_dir: str,
        label_path: str,
        modality: str,
        video_transform: Optional[Callable] = None,
        audio_transform: Optional[Callable] = None,
        av_tolerance: float = AV_TOLERANCE_SECONDS,
        seed: Optional[int] = None,
        skip_lines: AbstractSet[int] = frozenset(),
    ) -> None:
        if modality not in ("video", "audio", "audiovisual"):
            raise ValueError(f"unknown modality {modality!r}; choose video, audio or audiovisual")
        self.root_dir = root_dir
        self.label_path = label_path
        self.modality = modality
        self.items = read_label_list(label_path, skip_lines)
        self.video_transform = video_transform
        self.audio_transform = audio_transform
        self.av_tolerance = av_tolerance
        self.seed = seed

    @property
    def input_lengths(self):
        return [u.input_length for u in self.items]

    def media_path(self, idx: int) -> str:
        u = self.items[idx]
        return os.path.join(self.root_dir, u.dataset, u.rel_path)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, key: Union[int, Tuple[int, int]]) -> Dict[str, object]:
        epoch, idx = key if isinstance(key, tuple) else (0, key)
        generator = keyed_generator(self.seed, epoch, idx) if self.seed is not None else None
        u = self.items[idx]
        path = self.media_path(idx)
        out: Dict[str, object] = {"target": u.token_ids, "text": u.transcript, "idx": idx, "path": path}
        video = None
        if self.modality in ("video", "audiovisual"):
            video = load_video(path)
        if self.modality in ("audio", "audiovisual"):
            audio = load_audio(os.path.splitext(path)[0] + ".wav")
            if video is not None:
                want = video.size(0) * SAMPLES_PER_FRAME
                if abs(audio.size(0) - want) > self.av_tolerance * SAMPLE_RATE:
                    raise ValueError(
                        f"{path}: audio lasts {audio.size(0) / 16000:.3f} s but the video "
                        f"{video.size(0) / 25:.3f} s ({video.size(0)} frames); they differ by more than "
                        f"{self.av_tolerance} s"
                    )
                audio = cut_or_pad(audio, want)
            out["audio"] = self.audio_transform(audio, idx, generator) if self.audio_transform else audio
        if video is not None:
            out["video"] = self.video_transform(video, generator) if self.video_transform else video
        return out
