"""The SNR levels of the training babble (``--train-snrs``) and the parsing of the flag."""

import math
from typing import Tuple

CLEAN_SNR = 999999  # an SNR level that means "no noise" (Auto-AVSR's convention)
TRAIN_SNRS = (-5, 0, 5, 10, 15, 20, CLEAN_SNR)


def parse_snr_levels(text: str, flag: str = "--train-snrs") -> Tuple[float, ...]:
    """``"-5,0,5,clean"`` -> ``(-5.0, 0.0, 5.0, CLEAN_SNR)``: comma-separated dB values, ``clean``
    for no noise; anything else is refused naming ``flag``."""
    levels = []
    for item in text.split(","):
        item = item.strip()
        if item.lower() == "clean":
            levels.append(CLEAN_SNR)
            continue
        try:
            value = float(item)
        except ValueError:
            value = math.nan
        if not math.isfinite(value):
            raise ValueError(f"{flag}: {item!r} is not an SNR in dB (a number) or 'clean' (in {text!r})")
        levels.append(value)
    return tuple(levels)
