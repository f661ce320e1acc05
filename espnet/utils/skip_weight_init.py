"""Building a model whose every weight a checkpoint will overwrite, without drawing random
initial weights first (for the full-size legacy model, 250 M parameters, that drawing takes
longer on CPU than reading the checkpoint)."""

import contextlib
from typing import Iterator

import torch

# the in-place initialisers of ``torch.nn.init`` that modules call from ``reset_parameters``
# and their own ``__init__`` (looked up on the module at call time, so patching them works)
INITIALISERS = (
    "uniform_", "normal_", "trunc_normal_", "constant_", "ones_", "zeros_", "eye_", "dirac_",
    "xavier_uniform_", "xavier_normal_", "kaiming_uniform_", "kaiming_normal_", "orthogonal_", "sparse_",
)


def _keep(tensor: torch.Tensor, *args, **kwargs) -> torch.Tensor:
    """An initialiser that leaves ``tensor`` as it is (uninitialised memory)."""
    return tensor


@contextlib.contextmanager
def skip_weight_init() -> Iterator[None]:
    """Within the block, ``torch.nn.init``'s initialisers do nothing: parameters keep
    whatever memory they were given. Only for a model that then loads a checkpoint strictly
    (``load_state_dict(strict=True)``: every parameter and persistent buffer overwritten);
    buffers computed in ``__init__`` (positional tables) are made as usual."""
    saved = {name: getattr(torch.nn.init, name) for name in INITIALISERS if hasattr(torch.nn.init, name)}
    try:
        for name in saved:
            setattr(torch.nn.init, name, _keep)
        yield
    finally:
        for name, function in saved.items():
            setattr(torch.nn.init, name, function)
