"""Builds decoders from the registry."""

from espnet.nets.pytorch_backend.decoder.base_decoder import BaseDecoder
from espnet.nets.pytorch_backend.registry import DECODERS


class DecoderFactory:
    """Static factory: ``name`` + model config -> decoder instance."""

    @staticmethod
    def create_decoder(name: str, args) -> BaseDecoder:
        return DECODERS.create(name, args)
