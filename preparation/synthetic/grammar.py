"""The GRID sentence grammar: six slots, 51 words, one word drawn per slot.

    command colour preposition letter digit adverb      e.g. "BIN BLUE AT F TWO NOW"
"""

import random
from typing import List, Sequence, Tuple

COMMANDS = ("bin", "lay", "place", "set")
COLOURS = ("blue", "green", "red", "white")
PREPOSITIONS = ("at", "by", "in", "with")
LETTERS = tuple("abcdefghijklmnopqrstuvxyz")  # GRID leaves out "w" (three syllables)
DIGITS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
ADVERBS = ("again", "now", "please", "soon")

SLOTS: Tuple[Sequence[str], ...] = (COMMANDS, COLOURS, PREPOSITIONS, LETTERS, DIGITS, ADVERBS)
VOCABULARY: Tuple[str, ...] = tuple(word for slot in SLOTS for word in slot)


def sample_sentence(rng: random.Random) -> List[str]:
    """One lower-case GRID sentence: a list of 6 words, one per slot, uniformly drawn."""
    return [slot[rng.randrange(len(slot))] for slot in SLOTS]


def transcript(words: Sequence[str]) -> str:
    """Upper-case transcript of ``words`` joined by single spaces."""
    return " ".join(words).upper()


# eSpeak reads a lone "a" as the article; its letter name is given as eSpeak phonemes.
_SPOKEN = {"a": "[['eI]]"}


def spoken_text(words: Sequence[str]) -> str:
    """Text handed to eSpeak for ``words`` (``[[...]]`` marks eSpeak phoneme codes)."""
    return " ".join(_SPOKEN.get(w, w) for w in words)
