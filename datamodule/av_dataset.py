"""Audio/visual dataset over a label CSV."""

import os
from typing import AbstractSet, Callable, Dict, List, Optional, Tuple, Union

import torch

from datamodule.clip import AV_TOLERANCE_SECONDS, load_clip
from datamodule.label_list import STREAMS, read_label_list
from datamodule.media import wav_path
from datamodule.media_cache import MediaCache
from datamodule.seeding import keyed_generator

MODALITY_STREAMS = {"video": ("video",), "audio": ("audio",), "audiovisual": ("video", "audio")}
DROPOUT_KEY = 0x6D64  # keys the modality-dropout generator apart from the augmentation's


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
        media_cache: Decoded clips kept in memory (``--media-cache-gb``), or ``None`` to
            decode every clip each time it is read.
        modality_dropout: Audio-visual training (``--modality-dropout P``): with probability
            P an item comes without one of its streams, the video or the audio with equal
            chance (drawn from (``seed``, epoch, index), apart from the augmentation's draws).
        drop_streams: Streams no item delivers (``eval.py --drop-stream``).

    An item lacks a stream (no ``video`` / ``audio`` key) when its line marks it missing
    (``rel_path|missing=video``, see :mod:`datamodule.label_list`), when it is in
    ``drop_streams`` or when modality dropout drops it; the collated batch then says which
    utterances have it (``video_present`` / ``audio_present``) and an audio-visual model puts
    its learned stand-in there.
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
        media_cache: Optional[MediaCache] = None,
        modality_dropout: float = 0.0,
        drop_streams: AbstractSet[str] = frozenset(),
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
        self.media_cache = media_cache
        if not 0.0 <= modality_dropout <= 1.0:
            raise ValueError(f"--modality-dropout must be in [0, 1], got {modality_dropout}")
        if modality_dropout > 0 and modality != "audiovisual":
            raise ValueError(f"--modality-dropout drops one of two streams; this is a {modality} model")
        unknown = set(drop_streams) - set(STREAMS)
        if unknown:
            raise ValueError(f"--drop-stream must be video or audio, got {', '.join(sorted(unknown))}")
        for stream in drop_streams:
            if modality != "audiovisual":
                raise ValueError(f"--drop-stream {stream}: only an audio-visual model has another stream to decode "
                                 f"from; this is a {modality} model")
        self.modality_dropout = modality_dropout
        self.drop_streams = frozenset(drop_streams)

    @property
    def input_lengths(self):
        return [u.input_length for u in self.items]

    def media_path(self, idx: int) -> str:
        u = self.items[idx]
        return os.path.join(self.root_dir, u.dataset, u.rel_path)

    def media_files(self) -> List[Tuple[str, str]]:
        """``(stream, path)`` of every file the items may read: the ``.mp4`` for video, the
        ``.wav`` beside it for audio, but not a stream the line marks as missing or that
        ``drop_streams`` leaves out."""
        files = []
        for idx, u in enumerate(self.items):
            path = self.media_path(idx)
            for stream in MODALITY_STREAMS[self.modality]:
                if stream != u.missing and stream not in self.drop_streams:
                    files.append((stream, path if stream == "video" else wav_path(path)))
        return files

    def __len__(self) -> int:
        return len(self.items)

    def streams(self, idx: int, epoch: int = 0) -> Tuple[str, ...]:
        """The streams item ``idx`` delivers in ``epoch``: the model's, less the one its line
        marks as missing, less ``drop_streams``, less the one modality dropout drops."""
        u = self.items[idx]
        wanted = list(MODALITY_STREAMS[self.modality])
        if u.missing in wanted and len(wanted) == 1:
            raise ValueError(f"{self.media_path(idx)}: line {u.line_no} of {self.label_path} marks the {u.missing} "
                             f"as missing, and this {self.modality} model reads nothing else")
        kept = [s for s in wanted if s != u.missing and s not in self.drop_streams]
        if not kept:
            raise ValueError(f"{self.media_path(idx)}: line {u.line_no} of {self.label_path} marks the {u.missing} "
                             f"as missing and the other stream is dropped: nothing is left to read")
        if self.modality_dropout > 0 and len(kept) == 2:
            # its own generator: the augmentation draws stay those of a run without dropout
            gen = keyed_generator(self.seed or 0, epoch, idx, DROPOUT_KEY)
            drop, which = torch.rand(2, generator=gen).tolist()
            if drop < self.modality_dropout:
                kept.remove("video" if which < 0.5 else "audio")
        return tuple(kept)

    def __getitem__(self, key: Union[int, Tuple[int, int]]) -> Dict[str, object]:
        epoch, idx = key if isinstance(key, tuple) else (0, key)
        generator = keyed_generator(self.seed, epoch, idx) if self.seed is not None else None
        u = self.items[idx]
        path = self.media_path(idx)
        streams = self.streams(idx, epoch)
        out: Dict[str, object] = {"target": u.token_ids, "text": u.transcript, "idx": idx, "path": path}
        clip = load_clip(path, streams, media_cache=self.media_cache, av_tolerance=self.av_tolerance)
        if "audio" in clip:
            audio = clip["audio"]
            out["audio"] = self.audio_transform(audio, idx, generator) if self.audio_transform else audio
        if "video" in clip:
            video = clip["video"]
            out["video"] = self.video_transform(video, generator) if self.video_transform else video
        return out
