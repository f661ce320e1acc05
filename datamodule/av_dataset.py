"""Audio/visual dataset over a label CSV."""

import os
from typing import Callable, Dict, Optional

import torch

from datamodule.label_list import read_label_list
from datamodule.media import load_audio, load_video

SAMPLES_PER_FRAME = 640
AV_TOLERANCE_SECONDS = 0.1


def cut_or_pad(data: torch.Tensor, size: int) -> torch.Tensor:
    """Trim or zero-pad ``data`` ``(S, C)`` along time to ``size``."""
    if data.size(0) < size:
        return torch.nn.functional.pad(data, (0, 0, 0, size - data.size(0)))
    return data[:size]


class AVDataset(torch.utils.data.Dataset):
    """Items ``{"video": (T, 1, 88, 88)?, "audio": (S, 1)?, "target": (L,), "text": str | None,
    "idx": int}``.

    ``text`` is the label list's transcript column (``None`` when the line has none; the
    training module / evaluation then recover it from the SentencePiece ids). Decoders
    with their own tokenizer (``--decoder llama`` / ``whisper-decoder``) train on it.

    Media lives at ``root_dir/dataset/rel_path`` (the ``.mp4``); audio is the ``.wav``
    next to it. With both modalities the two must cover the same time span: a difference
    above ``av_tolerance`` seconds is an error naming the file; within it the audio is
    cut/padded to ``640 * T`` samples. Transforms (noise included) apply per stream.

    Args:
        root_dir: Dataset root.
        label_path: Label CSV.
        modality: ``video``, ``audio`` or ``audiovisual``.
        video_transform: ``frames -> tensor``.
        audio_transform: ``(waveform, idx) -> tensor`` (the index keys reproducible noise).
        av_tolerance: Allowed audio/video duration mismatch in seconds.
    """

    def __init__(
        self,
        root_dir: str,
        label_path: str,
        modality: str,
        video_transform: Optional[Callable] = None,
        audio_transform: Optional[Callable] = None,
        av_tolerance: float = AV_TOLERANCE_SECONDS,
    ) -> None:
        if modality not in ("video", "audio", "audiovisual"):
            raise ValueError(f"unknown modality {modality!r}; choose video, audio or audiovisual")
        self.root_dir = root_dir
        self.label_path = label_path
        self.modality = modality
        self.items = read_label_list(label_path)
        self.video_transform = video_transform
        self.audio_transform = audio_transform
        self.av_tolerance = av_tolerance

    @property
    def input_lengths(self):
        return [u.input_length for u in self.items]

    def media_path(self, idx: int) -> str:
        u = self.items[idx]
        return os.path.join(self.root_dir, u.dataset, u.rel_path)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, idx: int) -> Dict[str, object]:
        u = self.items[idx]
        path = self.media_path(idx)
        out: Dict[str, object] = {"target": u.token_ids, "text": u.transcript, "idx": idx}
        video = None
        if self.modality in ("video", "audiovisual"):
            video = load_video(path)
        if self.modality in ("audio", "audiovisual"):
            audio = load_audio(os.path.splitext(path)[0] + ".wav")
            if video is not None:
                want = video.size(0) * SAMPLES_PER_FRAME
                if abs(audio.size(0) - want) > self.av_tolerance * SAMPLES_PER_FRAME * 25:
                    raise ValueError(
                        f"{path}: audio lasts {audio.size(0) / 16000:.3f} s but the video "
                        f"{video.size(0) / 25:.3f} s ({video.size(0)} frames); they differ by more than "
                        f"{self.av_tolerance} s"
                    )
                audio = cut_or_pad(audio, want)
            out["audio"] = self.audio_transform(audio, idx) if self.audio_transform else audio
        if video is not None:
            out["video"] = self.video_transform(video) if self.video_transform else video
        return out
