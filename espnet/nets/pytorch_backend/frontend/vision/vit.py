"""ViT frontend: a pretrained image transformer applied to every video frame."""

from typing import Tuple

import torch

from espnet.nets.pytorch_backend.component_options import Option, merge
from espnet.nets.pytorch_backend.frontend.hf_base import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    HFFrontend,
    image_mean_std,
    load_pretrained,
    pair,
    valid_mask,
    video_to_pixels,
)


class PerFrameFrontend(HFFrontend):
    """Image model run on each valid frame independently; one vector per frame.

    Input ``(B, T, 1, H, W)`` dataset-normalised grayscale mouth crops at 25 fps and
    lengths in frames. Only the valid frames are gathered and run (``chunk_size`` frames
    per call); they are resized to the model's ``image_size``, repeated to 3 channels
    and normalised with the model's image mean/std. Output ``(B, T, output_dim)`` at
    25 Hz, padded frames are zero, lengths unchanged.
    """

    frame_rate = 25.0
    pools: Tuple[str, ...] = ()

    def __init__(self, model, mean, std, pool: str, freeze: bool = True, chunk_size: int = 256) -> None:
        super().__init__(model, freeze)
        if pool not in self.pools:
            raise ValueError(f"{type(self).__name__}: pool must be one of {', '.join(self.pools)}, got {pool!r}")
        self.pool = pool
        self.chunk_size = int(chunk_size)
        vision_config = model.config
        self.image_size = pair(vision_config.image_size)
        self.output_dim = int(vision_config.hidden_size)
        self.mean, self.std = tuple(mean), tuple(std)

    def embed_frames(self, pixels: torch.Tensor) -> torch.Tensor:
        """``(N, 3, S, S)`` -> ``(N, output_dim)``."""
        raise NotImplementedError

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        if x.dim() == 4:
            x = x.unsqueeze(2)
        if x.dim() != 5 or x.size(2) != 1:
            raise ValueError(f"{type(self).__name__} expects (B, T, 1, H, W) frames, got {tuple(x.shape)}")
        b, t = x.shape[:2]
        mask = valid_mask(lengths, t)
        frames = x[mask]  # (N, 1, H, W), valid frames only
        out = []
        with self.model_context():
            for start in range(0, frames.size(0), self.chunk_size):
                pixels = video_to_pixels(
                    frames[start : start + self.chunk_size], self.image_size, self.mean, self.std, self.model.dtype
                )
                out.append(self.embed_frames(pixels))
        if out:
            vec = torch.cat(out)
        else:
            vec = x.new_zeros(0, self.output_dim)
        feats = vec.new_zeros(b, t, self.output_dim)  # model dtype
        feats = feats.masked_scatter(mask.unsqueeze(-1), vec) if vec.numel() else feats
        return feats, lengths


class ViTFrontend(PerFrameFrontend):
    """``transformers.ViTModel`` per frame (``--vision-encoder vit``).

    ``pool="cls"`` (default): the final-layer-normed CLS token; ``"mean"``: mean of the
    patch tokens. Pixel mean/std come from the model's ``preprocessor_config.json``; when
    there is none, the ImageNet values (mean 0.485/0.456/0.406, std 0.229/0.224/0.225).
    The checkpoint's pooler (dense + tanh) is not loaded.
    """

    pools = ("cls", "mean")
    default_model_name = "google/vit-base-patch16-224-in21k"
    options = merge(HFFrontend.options, (
        Option("pool", "cls", "Per-frame vector: the CLS token or the mean of the patch tokens.", choices=pools,
               flag="--vision-pool"),
    ))

    def __init__(self, model_name: str, freeze: bool = True, pool: str = "cls", chunk_size: int = 256,
                 dtype: torch.dtype = torch.float32) -> None:
        model = load_pretrained(
            "ViTModel", model_name, "--vision-model-name", "the ViT frontend", ("vit",), dtype=dtype,
            add_pooling_layer=False,
        )
        mean, std = image_mean_std(model_name, IMAGENET_MEAN, IMAGENET_STD)
        super().__init__(model, mean, std, pool, freeze, chunk_size)

    def embed_frames(self, pixels: torch.Tensor) -> torch.Tensor:
        hidden = self.model(pixel_values=pixels).last_hidden_state  # (N, 1 + P, D)
        return hidden[:, 0] if self.pool == "cls" else hidden[:, 1:].mean(1)
