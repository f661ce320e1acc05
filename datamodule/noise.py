"""Noise for augmentation and noisy evaluation: loading a noise file, mixing at a target
SNR, and the project's own procedurally generated babble (no third-party recordings)."""

import math
import os
from typing import Optional

import torch

from datamodule.media import SAMPLE_RATE, load_audio

# Approximate formant frequencies (Hz) of a few vowels (F1, F2, F3).
_VOWELS = torch.tensor(
    [
        [270.0, 2290.0, 3010.0],
        [530.0, 1840.0, 2480.0],
        [730.0, 1090.0, 2440.0],
        [570.0, 840.0, 2410.0],
        [300.0, 870.0, 2240.0],
        [500.0, 1500.0, 2500.0],
        [660.0, 1720.0, 2410.0],
    ]
)


def _talker(n_samples: int, gen: torch.Generator, sr: int) -> torch.Tensor:
    """One synthetic talker: voiced syllables (harmonics shaped by vowel formants, f0
    glides, Hann envelopes), fricative bursts and pauses."""
    def rnd() -> float:
        return float(torch.rand((), generator=gen))

    out = torch.zeros(n_samples)
    f0_base = 90.0 + 160.0 * rnd()
    tract = 0.85 + 0.35 * rnd()
    pos = 0
    while pos < n_samples:
        dur = int(sr * (0.1 + 0.22 * rnd()))
        dur = min(dur, n_samples - pos)
        kind = rnd()
        if kind < 0.12 or dur < 16:  # pause
            pos += dur
            continue
        env = torch.hann_window(dur, periodic=False)
        if kind < 0.27:  # fricative: high-passed noise
            burst = torch.randn(dur + 1, generator=gen)
            seg = 0.3 * (burst[1:] - burst[:-1]) * env
        else:
            t = torch.arange(dur) / sr
            glide = 1.0 + (rnd() - 0.5) * 0.3 * t / max(float(t[-1]), 1e-3)
            f0 = f0_base * (1.0 + 0.15 * (rnd() - 0.5)) * glide  # (dur,)
            phase = 2 * math.pi * torch.cumsum(f0, 0) / sr
            formants = _VOWELS[int(rnd() * len(_VOWELS)) % len(_VOWELS)] / tract
            n_harm = max(1, int(4000.0 / float(f0.max())))
            k = torch.arange(1, n_harm + 1, dtype=torch.float32)
            freqs = k * float(f0.mean())
            amp = sum(torch.exp(-(((freqs - f) / (60.0 + 0.08 * f)) ** 2)) for f in formants)
            amp = amp + 0.02
            seg = (amp.unsqueeze(1) * torch.sin(k.unsqueeze(1) * phase.unsqueeze(0))).sum(0) * env
        out[pos : pos + dur] += seg
        pos += dur
    return out / out.std().clamp_min(1e-8)


def synthetic_babble(seconds: float = 30.0, n_talkers: int = 8, seed: int = 0, sr: int = SAMPLE_RATE) -> torch.Tensor:
    """Deterministic babble: ``n_talkers`` synthetic voices summed, peak 0.9.

    Returns:
        ``(1, round(seconds * sr))`` float tensor.
    """
    gen = torch.Generator().manual_seed(seed)
    n = int(round(seconds * sr))
    mix = sum(_talker(n, gen, sr) for _ in range(n_talkers))
    return (0.9 * mix / mix.abs().max().clamp_min(1e-8)).unsqueeze(0)


CORPUS_NOISE_FILE = "babble.wav"


def resolve_noise_file(root_dir: str, noise_file: Optional[str]) -> Optional[str]:
    """The noise wav to use: ``--noise-file`` when given (it must exist), else the corpus's
    own ``ROOT/babble.wav`` when present (the synthetic corpus writes one), else ``None``
    (the built-in procedural babble)."""
    if noise_file is not None:
        if not os.path.isfile(noise_file):
            raise FileNotFoundError(f"--noise-file: file not found: {noise_file}")
        return noise_file
    candidate = os.path.join(root_dir, CORPUS_NOISE_FILE)
    return candidate if os.path.isfile(candidate) else None


def load_noise(path: Optional[str]) -> torch.Tensor:
    """Noise ``(1, N)`` at 16 kHz from ``path``, or the built-in babble when ``None``.

    Raises:
        ValueError: naming ``path`` when the noise cannot be mixed at an SNR: no samples,
            NaN/inf samples, or no energy (all samples zero: any SNR would leave the speech clean).
    """
    if path is None:
        return synthetic_babble()
    noise = load_audio(path).t()
    if noise.numel() == 0:
        raise ValueError(f"{path}: the noise file has no samples")
    if not bool(torch.isfinite(noise).all()):
        raise ValueError(f"{path}: the noise file has NaN/inf samples")
    if not bool(noise.abs().max() > 0):
        raise ValueError(f"{path}: the noise file has no energy (all {noise.size(1)} samples are zero), so no SNR "
                         f"can be reached by mixing it in; give a noise file with sound in it")
    return noise


def add_noise(speech: torch.Tensor, noise: torch.Tensor, snr_db: float) -> torch.Tensor:
    """Mix ``noise`` into ``speech`` (both ``(C, S)``) so that the result has ``snr_db``."""
    e_speech = speech.pow(2).sum(-1, keepdim=True).clamp_min(1e-12)
    e_noise = noise.pow(2).sum(-1, keepdim=True).clamp_min(1e-12)
    current = 10 * (torch.log10(e_speech) - torch.log10(e_noise))
    scale = 10 ** ((current - snr_db) / 20.0)
    return speech + scale * noise


def noise_segment(noise: torch.Tensor, length: int, gen: Optional[torch.Generator] = None) -> torch.Tensor:
    """A random ``(1, length)`` slice of ``noise``, tiled when the noise is shorter."""
    if noise.size(1) < length:
        noise = noise.repeat(1, length // noise.size(1) + 1)
    start = int(torch.randint(0, noise.size(1) - length + 1, (1,), generator=gen))
    return noise[:, start : start + length]
