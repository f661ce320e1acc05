"""Layer normalisation with the ESPnet epsilon."""

import torch


class LayerNorm(torch.nn.LayerNorm):
    """LayerNorm over the last axis with ``eps=1e-12`` (the value every ESPnet/Auto-AVSR
    checkpoint was trained with).

    Args:
        nout: Size of the normalised (last) axis.
    """

    def __init__(self, nout: int) -> None:
        super().__init__(nout, eps=1e-12)
