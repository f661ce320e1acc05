"""From eSpeak phonemes to mouth articulator trajectories at 25 fps.

Each phoneme maps to a viseme class; each class has articulatory targets (see
:data:`PARAMS`) and a dominance in (0, 1]: how much the phone resists its neighbours
(a bilabial closes the lips whatever the vowel around it; an /h/ or /k/ just takes the
shape of the next vowel). Diphthongs get two or three targets spread over the phone.

Trajectory: one key per target (at the phone's midpoint, or spread for diphthongs), keys
of low dominance blended towards their neighbours, smooth ease-in/ease-out
(smoothstep) between consecutive keys, a Gaussian low-pass for lip inertia, and the
average over each frame's 40 ms exposure.
"""

import math
import random
from typing import Dict, List, Sequence, Tuple

import torch

PARAMS = ("open", "width", "round", "teeth", "tongue", "bite")
"""Articulators: lip opening (0 closed, 1 wide open, < 0 pressed), lip spreading (0..1),
rounding/protrusion (0..1), teeth visibility (0..1), tongue visibility (0..1), upper teeth
on the lower lip (0..1, labiodentals)."""
N_PARAMS = len(PARAMS)

# viseme: (open, width, round, teeth, tongue, bite), dominance
VISEMES: Dict[str, Tuple[Tuple[float, ...], float]] = {
    "rest": ((0.0, 0.42, 0.15, 0.0, 0.0, 0.0), 0.7),
    "bilabial": ((-0.25, 0.42, 0.2, 0.0, 0.0, 0.0), 1.0),
    "labiodental": ((0.06, 0.5, 0.1, 1.0, 0.0, 1.0), 0.95),
    "dental": ((0.24, 0.55, 0.05, 0.9, 1.0, 0.0), 0.85),
    "alveolar": ((0.18, 0.55, 0.1, 0.8, 0.35, 0.0), 0.55),
    "sibilant": ((0.1, 0.6, 0.1, 1.0, 0.05, 0.0), 0.8),
    "lateral": ((0.26, 0.52, 0.1, 0.7, 0.75, 0.0), 0.55),
    "postalveolar": ((0.16, 0.3, 0.8, 0.85, 0.05, 0.0), 0.85),
    "velar": ((0.3, 0.5, 0.2, 0.35, 0.15, 0.0), 0.3),
    "glottal": ((0.35, 0.5, 0.15, 0.3, 0.1, 0.0), 0.1),
    "rhotic": ((0.2, 0.32, 0.65, 0.4, 0.15, 0.0), 0.7),
    "labiovelar": ((0.08, 0.15, 1.0, 0.0, 0.0, 0.0), 1.0),
    "palatal": ((0.16, 0.75, 0.0, 0.7, 0.2, 0.0), 0.6),
    "open_vowel": ((0.95, 0.6, 0.1, 0.3, 0.5, 0.0), 0.8),
    "mid_vowel": ((0.55, 0.62, 0.15, 0.5, 0.4, 0.0), 0.7),
    "schwa": ((0.38, 0.5, 0.15, 0.4, 0.3, 0.0), 0.35),
    "front_vowel": ((0.3, 0.92, 0.0, 0.85, 0.3, 0.0), 0.8),
    "back_vowel": ((0.62, 0.35, 0.75, 0.2, 0.2, 0.0), 0.8),
    "mid_round": ((0.45, 0.32, 0.75, 0.2, 0.2, 0.0), 0.8),
    "close_round": ((0.24, 0.18, 1.0, 0.1, 0.1, 0.0), 0.9),
}

# eSpeak English phoneme mnemonics (stress marks removed) -> viseme classes over the phone.
PHONEME_VISEMES: Dict[str, Tuple[str, ...]] = {
    **{p: ("bilabial",) for p in ("p", "b", "m")},
    **{p: ("labiodental",) for p in ("f", "v")},
    **{p: ("dental",) for p in ("T", "D")},
    **{p: ("alveolar",) for p in ("t", "d", "n", "t#", "d#", "t[", "t2", "d2", "n-", "?")},
    **{p: ("sibilant",) for p in ("s", "z")},
    **{p: ("lateral",) for p in ("l", "l/", "L", "@L")},
    **{p: ("postalveolar",) for p in ("S", "Z", "tS", "dZ")},
    **{p: ("velar",) for p in ("k", "g", "N", "x")},
    **{p: ("glottal",) for p in ("h",)},
    **{p: ("rhotic",) for p in ("r", "r-", "R", "*", "3", "3:", "@r", "a#r")},
    **{p: ("labiovelar",) for p in ("w", "w#", "W")},
    **{p: ("palatal",) for p in ("j", "C")},
    **{p: ("open_vowel",) for p in ("a", "a#", "A:", "A", "aa", "V", "A@", "a:")},
    **{p: ("mid_vowel",) for p in ("E", "e", "e@", "E:", "e:", "E2", "E3")},
    **{p: ("schwa",) for p in ("@", "@-", "@2", "@5", "I#", "a2")},
    **{p: ("front_vowel",) for p in ("i:", "i", "I", "I2", "i@3")},
    **{p: ("back_vowel",) for p in ("0", "O:", "O", "O@", "0:", "o@")},
    **{p: ("mid_round",) for p in ("o", "o:", "O2")},
    **{p: ("close_round",) for p in ("u:", "U", "u", "U@", "u@")},
    # diphthongs: several targets across the phone
    "eI": ("mid_vowel", "front_vowel"),
    "aI": ("open_vowel", "front_vowel"),
    "aI2": ("open_vowel", "front_vowel"),
    "aI@": ("open_vowel", "front_vowel", "schwa"),
    "aU": ("open_vowel", "close_round"),
    "oU": ("mid_round", "close_round"),
    "@U": ("schwa", "close_round"),
    "OI": ("back_vowel", "front_vowel"),
    "i@": ("front_vowel", "schwa"),
    "U@": ("close_round", "schwa"),
}
_POSITIONS = {1: (0.5,), 2: (0.3, 0.8), 3: (0.2, 0.55, 0.85)}
_VOWEL_CHARS = set("aAeEiIoOuUV03@")
_STRESS = "',%=!"
PAUSE_HOLD_S = 0.09  # rest keys this far inside a pause, so the lips settle during silences
SHORT_PAUSE_DOMINANCE = 0.3


def viseme_classes(phoneme: str) -> Tuple[str, ...]:
    """Viseme classes of an eSpeak mnemonic (``'aU`` -> open vowel then rounded close vowel);
    ``()`` for marks without a phone (``;``). Unknown names fall back on their first letter."""
    name = phoneme.lstrip(_STRESS)
    if not name or all(ch in ";#|-" for ch in name):
        return ()
    if name.startswith("_"):
        return ("rest",)
    if name in PHONEME_VISEMES:
        return PHONEME_VISEMES[name]
    for cut in range(len(name) - 1, 0, -1):
        if name[:cut] in PHONEME_VISEMES:
            return PHONEME_VISEMES[name[:cut]]
    return ("mid_vowel",) if name[0] in _VOWEL_CHARS else ("alveolar",)


def keyframes(phonemes: Sequence[Tuple[str, float]], end: float, rng: random.Random,
              variability: float = 0.05) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Articulatory keys of a phoneme timeline.

    Args:
        phonemes: ``(mnemonic, start_s)`` in time order.
        end: End of the last phone (s).
        rng: Per-utterance randomness (token-to-token variation of the targets).
        variability: Std of that variation (in target units).

    Returns:
        ``(times (K,), targets (K, N_PARAMS), dominance (K,))``; starts and ends on rest.
    """
    times: List[float] = [0.0]
    targets: List[Sequence[float]] = [VISEMES["rest"][0]]
    dominance: List[float] = [1.0]
    spans = [(p, t0, phonemes[i + 1][1] if i + 1 < len(phonemes) else end) for i, (p, t0) in enumerate(phonemes)]
    for phoneme, t0, t1 in spans:
        classes = viseme_classes(phoneme)
        if not classes or t1 <= t0:
            continue
        if classes == ("rest",):
            # a pause: settle on rest inside it (both ends when it is long)
            if t1 - t0 > 2 * PAUSE_HOLD_S:
                marks, dom = (t0 + PAUSE_HOLD_S, t1 - PAUSE_HOLD_S), VISEMES["rest"][1]
            else:  # a short gap between words only relaxes the lips a little
                marks, dom = (0.5 * (t0 + t1),), SHORT_PAUSE_DOMINANCE
            for t in marks:
                times.append(t)
                targets.append(VISEMES["rest"][0])
                dominance.append(dom)
            continue
        for cls, pos in zip(classes, _POSITIONS[min(len(classes), 3)]):
            target, dom = VISEMES[cls]
            jitter = [rng.gauss(0.0, variability) for _ in range(3)] + [0.0] * (N_PARAMS - 3)
            times.append(t0 + pos * (t1 - t0))
            targets.append([v + j for v, j in zip(target, jitter)])
            dominance.append(dom)
    times.append(max(end, times[-1] + 1e-3))
    targets.append(VISEMES["rest"][0])
    dominance.append(1.0)
    t = torch.tensor(times, dtype=torch.float32)
    order = torch.argsort(t, stable=True)
    return t[order], torch.tensor(targets, dtype=torch.float32)[order], torch.tensor(dominance)[order]


def coarticulate(targets: torch.Tensor, dominance: torch.Tensor) -> torch.Tensor:
    """Blend each key of dominance ``d`` with the mean of its neighbours:
    ``d * own + (1 - d) * neighbours`` (``(K, P)`` -> ``(K, P)``)."""
    if targets.size(0) < 3:
        return targets.clone()
    neighbours = targets.clone()
    neighbours[1:-1] = 0.5 * (targets[:-2] + targets[2:])
    d = dominance.unsqueeze(1)
    return d * targets + (1 - d) * neighbours


def interpolate(times: torch.Tensor, values: torch.Tensor, query: torch.Tensor) -> torch.Tensor:
    """Ease-in/ease-out (smoothstep) interpolation of keys ``values (K, P)`` at ``times (K,)``
    for ``query (Q,)`` seconds; held constant outside the keys. Returns ``(Q, P)``."""
    idx = torch.searchsorted(times, query, right=True).clamp(1, times.numel() - 1)
    t0, t1 = times[idx - 1], times[idx]
    s = ((query - t0) / (t1 - t0).clamp_min(1e-6)).clamp(0.0, 1.0)
    w = (s * s * (3.0 - 2.0 * s)).unsqueeze(1)
    return values[idx - 1] * (1 - w) + values[idx] * w


def trajectory(phonemes: Sequence[Tuple[str, float]], duration: float, n_frames: int, rng: random.Random,
               fps: int = 25, inertia_s: float = 0.018, articulation: float = 1.0) -> torch.Tensor:
    """Articulator values per video frame.

    Args:
        phonemes: ``(mnemonic, start_s)`` of the utterance, in time order.
        duration: Length of the audio (s); the last phone ends there.
        n_frames: Number of video frames ``T``.
        rng: Per-utterance randomness.
        fps: Video frame rate.
        inertia_s: Std of the Gaussian lip-inertia smoothing (s).
        articulation: Speaker's mouth opening factor.

    Returns:
        float tensor ``(T, N_PARAMS)`` (order of :data:`PARAMS`).
    """
    times, targets, dominance = keyframes(phonemes, duration, rng)
    values = coarticulate(targets, dominance)
    values[:, 0] = torch.where(values[:, 0] > 0, values[:, 0] * articulation, values[:, 0])
    step = 0.005  # 200 Hz articulator clock
    n_fine = max(1, int(math.ceil(n_frames / fps / step)))
    fine = interpolate(times, values, (torch.arange(n_fine, dtype=torch.float32) + 0.5) * step)  # (F, P)
    radius = int(math.ceil(3 * inertia_s / step))
    kernel = torch.exp(-0.5 * ((torch.arange(-radius, radius + 1) * step) / inertia_s) ** 2)
    kernel = (kernel / kernel.sum()).view(1, 1, -1).repeat(N_PARAMS, 1, 1)
    padded = torch.nn.functional.pad(fine.t().unsqueeze(0), (radius, radius), mode="replicate")
    smooth = torch.nn.functional.conv1d(padded, kernel, groups=N_PARAMS)[0].t()  # (F, P)
    # each frame integrates its 40 ms exposure: mean over its fine steps
    per_frame = int(round(1.0 / fps / step))
    total = n_frames * per_frame
    if smooth.size(0) < total:
        smooth = torch.cat([smooth, smooth[-1:].expand(total - smooth.size(0), -1)])
    return smooth[:total].reshape(n_frames, per_frame, N_PARAMS).mean(1)
