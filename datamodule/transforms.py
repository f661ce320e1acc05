"""Legacy Auto-AVSR train/test transforms for video, audio and text."""

import random
from typing import Optional, Sequence

import torch
import torchvision

from datamodule.noise import add_noise, load_noise, noise_segment
from datamodule.snr_levels import CLEAN_SNR, TRAIN_SNRS
from espnet.nets.pytorch_backend.frontend.base_frontend import VIDEO_MEAN, VIDEO_STD

CROP_SIZE = 88


class AdaptiveTimeMask(torch.nn.Module):
    """Zero random spans along time: ``length // stride`` (rounded) spans, each shorter
    than ``window`` steps. ``(T, ...) -> (T, ...)``. Draws from ``generator`` when given,
    else from the global torch / Python generators (as Auto-AVSR)."""

    def __init__(self, window: int, stride: int) -> None:
        super().__init__()
        self.window = window
        self.stride = stride

    def forward(self, x: torch.Tensor, generator: Optional[torch.Generator] = None) -> torch.Tensor:
        out = x.clone()
        length = out.size(0)
        n_mask = int((length + self.stride - 0.1) // self.stride)
        for width in torch.randint(0, self.window, (n_mask,), generator=generator).tolist():
            if length - width <= 0 or width == 0:
                continue
            if generator is None:
                start = random.randrange(0, length - width)
            else:
                start = int(torch.randint(0, length - width, (1,), generator=generator))
            out[start : start + width] = 0
        return out


def random_crop(frames: torch.Tensor, size: int, generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """The same random ``size`` x ``size`` window of every frame: ``(T, C, H, W) -> (T, C, size, size)``
    (drawn like torchvision's ``RandomCrop``: top, then left)."""
    height, width = frames.shape[-2:]
    if height < size or width < size:
        raise ValueError(f"frames of {width}x{height} pixels are smaller than the {size}x{size} crop")
    top = int(torch.randint(0, height - size + 1, (1,), generator=generator))
    left = int(torch.randint(0, width - size + 1, (1,), generator=generator))
    return frames[..., top : top + size, left : left + size]


class AddNoise(torch.nn.Module):
    """Add a random slice of ``noise`` at an SNR drawn from ``snr_levels``.

    ``(S, 1) -> (S, 1)``. An SNR of 999999 dB means clean.
    """

    def __init__(self, noise: torch.Tensor, snr_levels: Sequence[float]) -> None:
        super().__init__()
        self.noise = noise
        self.snr_levels = list(snr_levels)

    def forward(self, speech: torch.Tensor, generator: Optional[torch.Generator] = None) -> torch.Tensor:
        seg = noise_segment(self.noise, speech.size(0), generator)
        if generator is None:
            snr = random.choice(self.snr_levels)
        else:
            snr = self.snr_levels[int(torch.randint(0, len(self.snr_levels), (1,), generator=generator))]
        return add_noise(speech.t(), seg, float(snr)).t()


def _utterance_norm(x: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.layer_norm(x, x.shape, eps=1e-8)


class VideoTransform:
    """``uint8 (T, 3, H, W) -> float (T, 1, 88, 88)``: /255, crop (random for train,
    centre otherwise), ITU-R 601 grayscale, time masking (train), normalise. The train-time
    randomness comes from ``generator`` when one is passed."""

    def __init__(self, subset: str) -> None:
        self.train = subset == "train"
        self.center_crop = torchvision.transforms.CenterCrop(CROP_SIZE)
        self.gray = torchvision.transforms.Grayscale()
        self.mask = AdaptiveTimeMask(10, 25) if self.train else None
        self.normalize = torchvision.transforms.Normalize(VIDEO_MEAN, VIDEO_STD)

    def __call__(self, frames: torch.Tensor, generator: Optional[torch.Generator] = None) -> torch.Tensor:
        # crop the uint8 frames first: element-wise steps commute with cropping, so this gives
        # the legacy values while converting and graying only the 88x88 window
        x = random_crop(frames, CROP_SIZE, generator) if self.train else self.center_crop(frames)
        x = self.gray(x.float() / 255.0)
        if self.mask is not None:
            x = self.mask(x, generator)
        return self.normalize(x)


class AudioTransform:
    """``float (S, 1) -> (S, 1)``. Train: time masking, babble at a random SNR, utterance
    layer-norm. Test: optional babble at ``snr_target`` dB, utterance layer-norm.

    Args:
        subset: ``train``, ``val`` or ``test``.
        noise: ``(1, N)`` noise waveform; the built-in babble when ``None``.
        snr_target: Test-time SNR in dB (``None`` = clean).
        seed: With a seed, the noise of item ``key`` is drawn from its own generator
            (``seed``, ``key``), so noisy decoding is reproducible whatever the worker order.
        utterance_norm: Layer-norm the (noisy) waveform over the utterance, as Auto-AVSR
            does for its 1D-ResNet; ``False`` keeps the recorded level for frontends with
            their own preprocessing (the model's audio frontend says which:
            ``utterance_norm_input``).
        train_snrs: Training: the SNRs (dB) the babble is added at, one drawn per item
            (``CLEAN_SNR`` = none); only ``CLEAN_SNR`` = no noise augmentation.
    """

    def __init__(
        self,
        subset: str,
        noise: Optional[torch.Tensor] = None,
        snr_target: Optional[float] = None,
        seed: Optional[int] = None,
        utterance_norm: bool = True,
        train_snrs: Sequence[float] = TRAIN_SNRS,
    ) -> None:
        self.mask = AdaptiveTimeMask(6400, 16000) if subset == "train" else None
        self.noise = None
        if subset == "train" and any(level != CLEAN_SNR for level in train_snrs):
            self.noise = AddNoise(noise if noise is not None else load_noise(None), train_snrs)
        elif snr_target is not None:
            self.noise = AddNoise(noise if noise is not None else load_noise(None), [snr_target])
        self.seed = seed
        self.utterance_norm = bool(utterance_norm)

    def __call__(self, audio: torch.Tensor, key: int = 0, generator: Optional[torch.Generator] = None) -> torch.Tensor:
        """``generator`` (training: keyed by epoch and utterance) drives the masking and the
        noise; without it the noise of a seeded transform comes from (``seed``, ``key``)."""
        if self.mask is not None:
            audio = self.mask(audio, generator)
        if self.noise is not None:
            gen = generator
            if gen is None and self.seed is not None:
                gen = torch.Generator().manual_seed(self.seed * 1_000_003 + key)
            audio = self.noise(audio, gen)
        return _utterance_norm(audio) if self.utterance_norm else audio
