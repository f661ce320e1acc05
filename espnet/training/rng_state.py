"""The random generator states of a process (torch CPU/CUDA, NumPy, Python) as plain
values that ``torch.load(weights_only=True)`` reads back, for checkpoints."""

import random
from typing import Any, Dict

import numpy as np
import torch


def capture_rng_states() -> Dict[str, Any]:
    """``{"torch": ByteTensor, "cuda": [ByteTensor] , "numpy": {...}, "python": [...]}``."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    version, internal, gauss_next = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "gauss": float(gauss)},
        "python": [version, list(internal), gauss_next],
    }


def restore_rng_states(states: Dict[str, Any]) -> None:
    """Inverse of :func:`capture_rng_states` (CUDA states only when as many devices exist)."""
    torch.set_rng_state(states["torch"])
    cuda = states.get("cuda") or []
    if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)
    n = states["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
    version, internal, gauss_next = states["python"]
    random.setstate((version, tuple(internal), gauss_next))
