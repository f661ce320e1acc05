"""Builds the audio-visual fusion from the registry."""

from espnet.nets.pytorch_backend.fusion.multimodal_fusion import MultimodalFusion
from espnet.nets.pytorch_backend.registry import FUSIONS


class FusionFactory:
    """Static factory: fusion name + stream sizes -> :class:`MultimodalFusion`."""

    @staticmethod
    def create_fusion(name: str, vision_dim: int, audio_dim: int, config) -> MultimodalFusion:
        """The registered fusion layer (options from ``config.fusion_conf``), wrapped in the
        rate/length alignment (with learned stand-ins for a missing stream when
        ``config.missing_stream_embeddings``)."""
        return MultimodalFusion(FUSIONS.create(name, config, vision_dim, audio_dim),
                                missing_embeddings=config.missing_stream_embeddings)
