"""Builds vision and audio frontends from the registries."""

from espnet.nets.pytorch_backend.frontend.base_frontend import BaseFrontend
from espnet.nets.pytorch_backend.registry import AUDIO_ENCODERS, VISION_ENCODERS


class FrontendFactory:
    """Static factory: ``name`` + model config -> frontend instance."""

    @staticmethod
    def create_vision_encoder(name: str, args) -> BaseFrontend:
        """A registered vision frontend: ``(B, T, 1, H, W)`` frames -> ``(B, T', D)``."""
        return VISION_ENCODERS.create(name, args)

    @staticmethod
    def create_audio_encoder(name: str, args) -> BaseFrontend:
        """A registered audio frontend: ``(B, S, 1)`` 16 kHz samples -> ``(B, T', D)``."""
        return AUDIO_ENCODERS.create(name, args)
