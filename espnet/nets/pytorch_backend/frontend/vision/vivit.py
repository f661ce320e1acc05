"""ViViT frontend: a pretrained video transformer over tubelets, keeping a time axis."""

import math
from typing import Tuple

import torch

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


class ViViTFrontend(HFFrontend):
    """``transformers.VivitModel`` (``--vision-encoder vivit``).

    ViViT has fixed position embeddings for ``num_frames`` frames, so the clip is cut
    into chunks of ``num_frames`` frames that are encoded independently (no attention
    across chunks). In each item's last chunk the frames after the item's length are
    replaced by its last valid frame (so the result does not depend on batch padding);
    chunks that hold no valid frame are not run. Frames are resized to ``image_size``,
    repeated to 3 channels and normalised with the model's image mean/std (ImageNet
    values when there is no preprocessor config; the ``rescale_offset`` of
    ``VivitImageProcessor`` is not reproduced: intensities are in [0, 1] before the
    mean/std normalisation).

    Each tubelet time step gives one output frame: its spatial tokens are averaged.
    Output ``(B, ceil(T / tubelet_t), hidden_size)`` at ``25 / tubelet_t`` Hz, lengths
    ``ceil(len / tubelet_t)``, padded steps zero.
    """

    frame_rate = 12.5  # 25 fps / tubelet_t 2 of the default model; the instance reads its own tubelet
    default_model_name = "google/vivit-b-16x2-kinetics400"

    def __init__(self, model_name: str, freeze: bool = True, chunks_per_call: int = 8,
                 dtype: torch.dtype = torch.float32) -> None:
        model = load_pretrained(
            "VivitModel", model_name, "--vision-model-name", "the ViViT frontend", ("vivit",), dtype=dtype,
            add_pooling_layer=False,
        )
        super().__init__(model, freeze)
        cfg = model.config
        self.num_frames = int(cfg.num_frames)
        self.tubelet = tuple(int(v) for v in cfg.tubelet_size)  # (t, h, w)
        if self.num_frames % self.tubelet[0]:
            raise ValueError(f"ViViT num_frames {self.num_frames} is not a multiple of tubelet_t {self.tubelet[0]}")
        self.image_size = pair(cfg.image_size)
        self.output_dim = int(cfg.hidden_size)
        self.frame_rate = 25.0 / self.tubelet[0]
        self.steps_per_chunk = self.num_frames // self.tubelet[0]
        self.chunks_per_call = int(chunks_per_call)
        self.mean, self.std = image_mean_std(model_name, IMAGENET_MEAN, IMAGENET_STD)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        if x.dim() == 4:
            x = x.unsqueeze(2)
        if x.dim() != 5 or x.size(2) != 1:
            raise ValueError(f"ViViT frontend expects (B, T, 1, H, W) frames, got {tuple(x.shape)}")
        b, t = x.shape[:2]
        lengths = lengths.to(torch.long)
        n_chunks = max(1, math.ceil(t / self.num_frames))
        total = n_chunks * self.num_frames
        # frame index per (item, position): clamp to the item's last valid frame
        pos = torch.arange(total, device=x.device)[None, :]
        src = torch.minimum(pos, (lengths.clamp(min=1) - 1)[:, None]).clamp(max=t - 1)
        frames = torch.gather(x, 1, src.view(b, total, 1, 1, 1).expand(-1, -1, *x.shape[2:]))
        frames = frames.view(b * n_chunks, self.num_frames, *x.shape[2:])
        chunk_used = (torch.arange(n_chunks, device=x.device)[None, :] * self.num_frames < lengths[:, None]).view(-1)
        idx = chunk_used.nonzero().squeeze(1)
        d, s = self.output_dim, self.steps_per_chunk
        out = []
        with self.model_context():
            for start in range(0, idx.numel(), self.chunks_per_call):
                clip = frames[idx[start : start + self.chunks_per_call]]  # (C, F, 1, H, W)
                c = clip.size(0)
                pixels = video_to_pixels(clip.flatten(0, 1), self.image_size, self.mean, self.std, self.model.dtype)
                pixels = pixels.view(c, self.num_frames, 3, *self.image_size)
                hidden = self.model(pixel_values=pixels).last_hidden_state[:, 1:]  # drop CLS
                out.append(hidden.reshape(c, s, -1, d).mean(2))  # tokens are time-major
        steps = x.new_zeros(b * n_chunks, s, d)
        if out:
            steps = steps.index_copy(0, idx, torch.cat(out).to(steps.dtype))
        out_len = torch.div(lengths + self.tubelet[0] - 1, self.tubelet[0], rounding_mode="floor")
        t_out = math.ceil(t / self.tubelet[0])
        feats = steps.view(b, n_chunks * s, d)[:, :t_out]
        feats = feats * valid_mask(out_len, t_out).unsqueeze(-1).to(feats.dtype)
        return feats, out_len
