"""Mel filter banks on the Slaney scale (librosa's defaults, as Whisper uses them), shared by
the audio frontends that compute log-mel features in the graph."""

import math

import torch


def hz_to_mel_slaney(freq: torch.Tensor) -> torch.Tensor:
    """Slaney mel scale: linear below 1 kHz (3 mels per 200 Hz), logarithmic above."""
    linear = 3.0 * freq / 200.0
    log = 15.0 + torch.log(torch.clamp(freq, min=1e-10) / 1000.0) * (27.0 / math.log(6.4))
    return torch.where(freq >= 1000.0, log, linear)


def mel_to_hz_slaney(mel: torch.Tensor) -> torch.Tensor:
    linear = 200.0 * mel / 3.0
    log = 1000.0 * torch.exp((mel - 15.0) * (math.log(6.4) / 27.0))
    return torch.where(mel >= 15.0, log, linear)


def slaney_mel_filters(n_fft: int, n_mels: int, sampling_rate: int, f_min: float = 0.0, f_max: float = 8000.0) -> torch.Tensor:
    """``(n_fft // 2 + 1, n_mels)`` triangular filters on the Slaney mel scale with
    Slaney area normalisation (2 / bandwidth), as used by Whisper (librosa defaults)."""
    n_bins = n_fft // 2 + 1
    fft_freqs = torch.linspace(0, sampling_rate // 2, n_bins, dtype=torch.float64)
    mels = torch.linspace(
        float(hz_to_mel_slaney(torch.tensor(f_min, dtype=torch.float64))),
        float(hz_to_mel_slaney(torch.tensor(f_max, dtype=torch.float64))),
        n_mels + 2,
        dtype=torch.float64,
    )
    edges = mel_to_hz_slaney(mels)  # (n_mels + 2,) Hz
    width = edges[1:] - edges[:-1]
    rise = (fft_freqs[:, None] - edges[None, :-2]) / width[None, :-1]
    fall = (edges[None, 2:] - fft_freqs[:, None]) / width[None, 1:]
    filters = torch.clamp(torch.minimum(rise, fall), min=0.0)
    filters = filters * (2.0 / (edges[2:] - edges[:-2]))[None, :]
    return filters.to(torch.float32)
