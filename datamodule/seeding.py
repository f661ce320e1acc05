"""Seeds derived from integers, for randomness that does not depend on process or order.

Training randomness is keyed by where it happens rather than drawn from one running
generator: the augmentation of utterance ``idx`` in epoch ``e`` uses ``derive_seed(seed, e,
idx)`` and the dropout of a training step uses ``derive_seed(seed, rank, epoch, batch)``. The
same run therefore draws the same numbers whatever the number of DataLoader workers, whether
the workers persist across epochs, and whether the run was interrupted and resumed.
"""

import hashlib

import torch


def derive_seed(*parts: int) -> int:
    """A 63-bit seed from integers, the same in every process and Python run."""
    data = ",".join(str(int(p)) for p in parts).encode()
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "little") >> 1


def keyed_generator(*parts: int) -> torch.Generator:
    """A CPU ``torch.Generator`` seeded with :func:`derive_seed` of ``parts``."""
    return torch.Generator().manual_seed(derive_seed(*parts))
