"""CLIP-ViT frontend: the vision tower of a pretrained CLIP model applied to every frame."""

import torch

from espnet.nets.pytorch_backend.frontend.vision.vit import PerFrameFrontend
from espnet.nets.pytorch_backend.component_options import Option, merge
from espnet.nets.pytorch_backend.frontend.hf_base import HFFrontend, image_mean_std, load_pretrained

# OpenAI CLIP pixel statistics (used when the model directory has no preprocessor config).
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


class CLIPViTFrontend(PerFrameFrontend):
    """``transformers.CLIPVisionModel`` per frame (``--vision-encoder clip-vit``).

    Accepts a full CLIP checkpoint (only the vision tower is kept) or a saved
    ``CLIPVisionModel``. ``pool="pooled"`` (default): CLIP's pooled output (the
    post-layer-normed CLS token); ``"mean"``: mean of the patch tokens. Output
    ``(B, T, vision hidden_size)`` at 25 Hz; see :class:`PerFrameFrontend`.
    """

    pools = ("pooled", "mean")
    default_model_name = "openai/clip-vit-base-patch32"
    options = merge(HFFrontend.options, (
        Option("pool", "pooled", "Per-frame vector: CLIP's pooled output or the mean of the patch tokens.",
               choices=pools, flag="--vision-pool"),
    ))

    def __init__(self, model_name: str, freeze: bool = True, pool: str = "pooled", chunk_size: int = 256,
                 dtype: torch.dtype = torch.float32) -> None:
        model = load_pretrained(
            "CLIPVisionModel", model_name, "--vision-model-name", "the CLIP-ViT frontend", ("clip", "clip_vision_model"),
            dtype=dtype,
        )
        mean, std = image_mean_std(model_name, CLIP_MEAN, CLIP_STD)
        super().__init__(model, mean, std, pool, freeze, chunk_size)

    def embed_frames(self, pixels: torch.Tensor) -> torch.Tensor:
        out = self.model(pixel_values=pixels)
        return out.pooler_output if self.pool == "pooled" else out.last_hidden_state[:, 1:].mean(1)
