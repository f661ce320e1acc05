"""One registry per component family: the single place where a name maps to a class and
its static facts.

Adding a component = one new file with a class that has ``from_config(config)`` + one
``add(...)`` line below. Classes are imported lazily (by ``"module:Class"`` path) so that
heavy optional dependencies load only when the component is used. Names registered without
a target are planned components: they are valid choices on the command line, and selecting
one gives a clear "not available yet" error.
"""

import importlib
from dataclasses import dataclass
from typing import Dict, List, Optional


@dataclass(frozen=True)
class ComponentSpec:
    """Static facts of a registered component.

    Attributes:
        name: Registry name (the flag value).
        target: ``"package.module:Class"``; ``None`` for a planned component.
        output_dim: Feature size of the output with default settings (frontends).
        frame_rate: Output frames per second (frontends).
        default_model_name: Hugging Face id or local directory used when no
            ``--*-model-name`` is given (pretrained components).
        planned: Where a planned component is tracked.
    """

    name: str
    target: Optional[str]
    output_dim: Optional[int] = None
    frame_rate: Optional[float] = None
    default_model_name: Optional[str] = None
    planned: str = ""

    @property
    def available(self) -> bool:
        return self.target is not None

    def load_class(self) -> type:
        if self.target is None:
            raise NotImplementedError(f"{self.name} is not available yet ({self.planned})")
        module, _, cls = self.target.partition(":")
        return getattr(importlib.import_module(module), cls)


class Registry:
    """Name -> :class:`ComponentSpec` for one family, with aliases."""

    def __init__(self, family: str, flag: str) -> None:
        self.family = family
        self.flag = flag
        self._specs: Dict[str, ComponentSpec] = {}
        self._aliases: Dict[str, str] = {}

    def add(self, name: str, target: Optional[str], **facts) -> ComponentSpec:
        if name in self._specs or name in self._aliases:
            raise ValueError(f"{self.family} {name!r} is registered twice")
        spec = ComponentSpec(name=name, target=target, **facts)
        self._specs[name] = spec
        return spec

    def alias(self, alias: str, name: str) -> None:
        if name not in self._specs:
            raise ValueError(f"cannot alias {alias!r} to unknown {self.family} {name!r}")
        self._aliases[alias] = name

    def canonical(self, name: str) -> str:
        name = self._aliases.get(name, name)
        if name not in self._specs:
            raise ValueError(f"unknown {self.family} {name!r} for {self.flag}; registered: {', '.join(self.choices())}")
        return name

    def __getitem__(self, name: str) -> ComponentSpec:
        return self._specs[self.canonical(name)]

    def __contains__(self, name: str) -> bool:
        return name in self._specs or name in self._aliases

    def choices(self) -> List[str]:
        return list(self._specs) + list(self._aliases)

    def available(self) -> List[str]:
        return [n for n, s in self._specs.items() if s.available]

    def resolve_class(self, name: str) -> type:
        """The class registered as ``name``; a planned component raises
        ``NotImplementedError`` naming the flag and what is available now."""
        spec = self[name]
        if not spec.available:
            raise NotImplementedError(
                f"{self.flag} {spec.name} is not available yet ({spec.planned}); "
                f"available now: {', '.join(self.available())}"
            )
        return spec.load_class()

    def create(self, name: str, config) -> object:
        """Instantiate ``name`` with ``Class.from_config(config)``."""
        return self.resolve_class(name).from_config(config)


VISION_ENCODERS = Registry("vision encoder", "--vision-encoder")
AUDIO_ENCODERS = Registry("audio encoder", "--audio-encoder")
DECODERS = Registry("decoder", "--decoder")
FUSIONS = Registry("fusion", "--fusion-type")

MODEL_REGISTRY: Dict[str, Registry] = {
    "vision_encoder": VISION_ENCODERS,
    "audio_encoder": AUDIO_ENCODERS,
    "decoder": DECODERS,
    "fusion": FUSIONS,
}

_FRONTEND = "espnet.nets.pytorch_backend.frontend"
_FUSION = "espnet.nets.pytorch_backend.fusion"

# ---- vision encoders (input: (B, T, 1, 88, 88) mouth crops at 25 fps) ----------------
VISION_ENCODERS.add("resnet", f"{_FRONTEND}.resnet:VideoResNet", output_dim=512, frame_rate=25.0)
VISION_ENCODERS.add("vit", f"{_FRONTEND}.vision.vit:ViTFrontend", output_dim=768, frame_rate=25.0,
                    default_model_name="google/vit-base-patch16-224-in21k")
VISION_ENCODERS.add("vivit", f"{_FRONTEND}.vision.vivit:ViViTFrontend", output_dim=768, frame_rate=12.5,
                    default_model_name="google/vivit-b-16x2-kinetics400")
VISION_ENCODERS.add("clip-vit", f"{_FRONTEND}.vision.clip_vit:CLIPViTFrontend", output_dim=768, frame_rate=25.0,
                    default_model_name="openai/clip-vit-base-patch32")

# ---- audio encoders (input: (B, S, 1) waveform at 16 kHz) -----------------------------
AUDIO_ENCODERS.add("resnet1d", f"{_FRONTEND}.resnet1d:AudioResNet1D", output_dim=512, frame_rate=25.0)
AUDIO_ENCODERS.add("whisper", f"{_FRONTEND}.audio.whisper:WhisperFrontend", output_dim=512, frame_rate=50.0,
                   default_model_name="openai/whisper-base")
AUDIO_ENCODERS.add("wavlm", f"{_FRONTEND}.audio.wavlm:WavLMFrontend", output_dim=768, frame_rate=50.0,
                   default_model_name="microsoft/wavlm-base-plus")

# ---- decoders ----------------------------------------------------------------------------
DECODERS.add("transformer", "espnet.nets.pytorch_backend.decoder.transformer_decoder:TransformerDecoder")
DECODERS.add("llama", "espnet.nets.pytorch_backend.decoder.llama_decoder:LlamaDecoder",
             default_model_name="meta-llama/Llama-3.2-1B")
DECODERS.alias("llm", "llama")
DECODERS.add("whisper-decoder", "espnet.nets.pytorch_backend.decoder.whisper_decoder:WhisperTextDecoder",
             default_model_name="openai/whisper-base")

# ---- fusions (two aligned streams -> (B, T, adim)) -------------------------------------
FUSIONS.add("concat", f"{_FUSION}.concat_fusion:ConcatFusion")
FUSIONS.add("add", f"{_FUSION}.add_fusion:AddFusion")
FUSIONS.add("gated", f"{_FUSION}.gated_fusion:GatedFusion")
FUSIONS.add("attention", f"{_FUSION}.attention_fusion:AttentionFusion")
FUSIONS.add("bottleneck", f"{_FUSION}.bottleneck_fusion:BottleneckFusion")
