"""Babble noise: several talkers, each a chain of training utterances started at a random
offset, summed (``n_talkers`` voices at once, like a crowd) and normalised."""

import random
from typing import List, Sequence

import torch

SR = 16000


def _trim(wav: torch.Tensor, rel: float = 0.02) -> torch.Tensor:
    """Drop the leading and trailing silence of ``wav (S,)`` (below ``rel`` of its peak)."""
    loud = (wav.abs() > rel * wav.abs().max()).nonzero()
    return wav[int(loud[0]):int(loud[-1]) + 1] if loud.numel() else wav


def mix_babble(utterances: Sequence[torch.Tensor], seconds: float, seed: int, n_talkers: int = 8,
               peak: float = 0.9) -> torch.Tensor:
    """Babble ``(round(seconds * 16000),)`` float in [-peak, peak].

    Args:
        utterances: Training waveforms, float ``(S_i,)`` at 16 kHz.
        seconds: Length of the babble.
        seed: Seed of the choice of utterances, offsets, gaps and talker gains.
        n_talkers: Simultaneous voices (at least 6).
        peak: Peak amplitude of the result.
    """
    if n_talkers < 6:
        raise ValueError(f"babble needs at least 6 talkers, got {n_talkers}")
    if not utterances:
        raise ValueError("babble needs at least one training utterance")
    rng = random.Random(seed)
    n = int(round(seconds * SR))
    out = torch.zeros(n)
    for _ in range(n_talkers):
        pieces: List[torch.Tensor] = []
        length = 0
        offset = rng.randrange(0, SR * 2)  # start somewhere inside the talker's first utterances
        while length < n + offset:
            wav = _trim(utterances[rng.randrange(len(utterances))])
            wav = wav / wav.pow(2).mean().sqrt().clamp_min(1e-6)  # equal loudness per utterance
            gap = torch.zeros(int(SR * rng.uniform(0.0, 0.25)))
            pieces += [wav, gap]
            length += wav.numel() + gap.numel()
        out += rng.uniform(0.6, 1.0) * torch.cat(pieces)[offset:offset + n]
    return out * (peak / out.abs().max().clamp_min(1e-6))
