"""An example vision encoder in one file (used by ``tutorials/new_encoder.py``).

A small per-frame 2-D CNN followed by a temporal 1-D convolution. Everything a vision
encoder needs is here: subclass ``BaseFrontend``, declare its ``options`` (here one,
``width``, which becomes the flag ``--tiny-lip-width``), set ``output_dim`` and
``frame_rate``, and implement ``forward(x, lengths) -> (feats, lengths)``. The default
``from_config`` passes the options to the constructor.
"""

from typing import Tuple

import torch

from espnet.nets.pytorch_backend.component_options import Option
from espnet.nets.pytorch_backend.frontend.base_frontend import BaseFrontend
from espnet.nets.pytorch_backend.nets_utils import make_non_pad_mask


class TinyLipEncoder(BaseFrontend):
    """Mouth crops -> one ``4 * width``-d vector per frame, 25 Hz (lengths unchanged).

    Per frame: three stride-2 3×3 convolutions (``width``, ``2 width``, ``4 width`` channels,
    BatchNorm, ReLU) and global average pooling; then a kernel-3 convolution over time.
    Padded frames are zeroed before and after the temporal convolution, so in eval mode the
    padding of a batch never changes an utterance's features (in training, BatchNorm
    statistics include padded frames, as in the ResNet frontend).

    Args:
        width: Channels of the first convolution.

    Shapes:
        ``x`` ``(B, T, 1, H, W)`` (88×88 normalised grayscale), ``lengths`` ``(B,)`` frames
        -> ``(B, T, 4 * width)``, ``lengths``.
    """

    options = (Option("width", 16, "Channels of the first convolution of the tiny-lip encoder.", flag="--tiny-lip-width"),)
    frame_rate = 25.0

    def __init__(self, width: int = 16) -> None:
        super().__init__()
        self.output_dim = 4 * width
        layers, channels = [], 1
        for out in (width, 2 * width, 4 * width):
            layers += [torch.nn.Conv2d(channels, out, 3, stride=2, padding=1, bias=False),
                       torch.nn.BatchNorm2d(out), torch.nn.ReLU()]
            channels = out
        self.per_frame = torch.nn.Sequential(*layers, torch.nn.AdaptiveAvgPool2d(1))
        self.temporal = torch.nn.Conv1d(self.output_dim, self.output_dim, 3, padding=1)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        if x.dim() != 5:
            raise ValueError(f"TinyLipEncoder expects (B, T, 1, H, W), got {tuple(x.shape)}")
        b, t = x.shape[:2]
        feats = self.per_frame(x.reshape(b * t, *x.shape[2:])).reshape(b, t, -1)  # (B, T, D)
        mask = make_non_pad_mask(lengths, maxlen=t).to(feats.device).unsqueeze(-1)  # (B, T, 1) True on real frames
        feats = feats * mask
        feats = self.temporal(feats.transpose(1, 2)).transpose(1, 2)  # (B, T, D)
        return feats * mask, lengths
