"""Builds the audio-visual fusion from the registry."""

from espnet.nets.pytorch_backend.fusion.multimodal_fusion import MultimodalFusion
from espnet.nets.pytorch_backend.registry import FUSIONS


class FusionFactory:
    """Static factory: fusion name + stream sizes -> :class:`MultimodalFusion`."""

    @staticmethod
    def create_fusion(name: str, vision_dim: int, audio_dim: int, args) -> MultimodalFusion:
        layer = FUSIONS.resolve_class(name).from_dims(vision_dim, audio_dim, args.adim, args)
        return MultimodalFusion(layer)
