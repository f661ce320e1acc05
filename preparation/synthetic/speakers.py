"""Speakers of the synthetic corpus: voice x variant x rate x pitch, and a face.

Speaker ``k`` is entry ``k`` of a fixed shuffle of every combination of
:data:`ACCENTS` x :data:`VARIANTS` x :data:`RATES` x :data:`PITCHES` (864 speakers), so a
speaker id always means the same voice whatever the corpus seed. Its face (skin tone, lip
shade, mouth size, lip thickness, head pose, light) comes from a generator seeded with the id.
"""

import itertools
import random
from dataclasses import dataclass
from typing import List, Tuple

from preparation.synthetic.espeak import VoiceSettings

# English voices of the shipped espeak-ng-data (lang/gmw).
ACCENTS = ("en", "en-us", "en-gb-x-rp", "en-gb-scotland", "en-029", "en-us-nyc", "en-gb-x-gbclan",
           "en-gb-x-gbcwmd")
# Voice variants of espeak-ng-data/voices/!v ("" is the accent's own voice).
VARIANTS = ("", "m1", "m2", "m3", "m4", "m7", "f1", "f2", "f3", "f4", "m5", "m6")
RATES = (140, 160, 180)  # words per minute
PITCHES = (38, 50, 62)  # 0..100 around the variant's own pitch
_SHUFFLE_SEED = 20240611
MAX_SPEAKERS = len(ACCENTS) * len(VARIANTS) * len(RATES) * len(PITCHES)


@dataclass(frozen=True)
class Appearance:
    """Face of a speaker. Gray levels are 0..255 before lighting; lengths are pixels of the
    96x96 mouth crop; angles are radians."""

    skin: float  # skin gray level
    lip_ratio: float  # lip shade = skin * lip_ratio
    cavity: float  # gray level deep in the mouth
    teeth: float  # gray level of the teeth
    mouth_scale: float  # scales the mouth width, opening and lip thickness
    upper_lip: float  # upper lip thickness factor
    lower_lip: float  # lower lip thickness factor
    center: Tuple[float, float]  # mouth centre (x, y)
    tilt: float  # head roll
    articulation: float  # how wide the speaker opens the mouth (hypo < 1 < hyper)
    motion: float  # head motion amplitude factor
    light_dir: float  # direction of the side light
    noise: float  # sensor noise std (gray levels)


@dataclass(frozen=True)
class Speaker:
    """A speaker: ``index``, display ``name`` (``spk###``), eSpeak voice and face."""

    index: int
    name: str
    voice: VoiceSettings
    face: Appearance


def _combinations() -> List[Tuple[str, str, int, int]]:
    combos = list(itertools.product(ACCENTS, VARIANTS, RATES, PITCHES))
    random.Random(_SHUFFLE_SEED).shuffle(combos)
    return combos


_COMBOS = _combinations()


def speaker(index: int) -> Speaker:
    """Speaker ``index`` (0 <= index < :data:`MAX_SPEAKERS`)."""
    if not 0 <= index < MAX_SPEAKERS:
        raise ValueError(f"speaker index must be in [0, {MAX_SPEAKERS}), got {index}")
    accent, variant, rate, pitch = _COMBOS[index]
    rng = random.Random(1_000_003 * (index + 1))
    voice = VoiceSettings(
        name=f"{accent}+{variant}" if variant else accent,
        rate=rate,
        pitch=pitch,
        pitch_range=rng.randint(35, 75),
        word_gap=rng.randint(0, 2),
    )
    face = Appearance(
        skin=rng.uniform(120.0, 190.0),
        lip_ratio=rng.uniform(0.68, 0.82),
        cavity=rng.uniform(14.0, 32.0),
        teeth=rng.uniform(185.0, 230.0),
        mouth_scale=rng.uniform(1.1, 1.45),
        upper_lip=rng.uniform(0.8, 1.25),
        lower_lip=rng.uniform(0.85, 1.3),
        center=(rng.uniform(-3.0, 3.0), rng.uniform(-2.0, 4.0)),
        tilt=rng.uniform(-0.07, 0.07),
        articulation=rng.uniform(0.8, 1.2),
        motion=rng.uniform(0.5, 1.5),
        light_dir=rng.uniform(-1.0, 1.0),
        noise=rng.uniform(1.0, 2.5),
    )
    return Speaker(index, f"spk{index:03d}", voice, face)
