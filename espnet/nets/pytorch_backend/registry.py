"""One registry per component family: the single place where a name maps to a class and
its static facts.

Adding a component = one new file with a class that has ``from_config(config, options)``
(and, if it has any, its ``options``: see ``component_options.py``) + one ``add(...)`` line
below. Classes are imported lazily (by ``"module:Class"`` path) so that
heavy optional dependencies load only when the component is used. Names registered without
a target are planned components: they are valid choices on the command line, and selecting
one gives a clear "not available yet" error.
"""

import importlib
from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Optional, Tuple

from espnet.nets.pytorch_backend.component_options import Option, resolve_options


@dataclass(frozen=True)
class ComponentSpec:
    """A registered component.

    Its static facts live on its class, the single place they are written: ``options``
    (what it can be configured with), and for frontends ``frame_rate`` and, for pretrained
    components, ``default_model_name``. A fact that depends on the loaded model (a
    frontend's ``output_dim``, ViViT's frame rate) is read from the built instance.

    Attributes:
        name: Registry name (the flag value).
        target: ``"package.module:Class"``; ``None`` for a planned component.
        planned: Where a planned component is tracked.
    """

    name: str
    target: Optional[str]
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
    """Name -> :class:`ComponentSpec` for one family, with aliases.

    Args:
        family: What the components are, for messages (``vision encoder``).
        flag: The flag that chooses one (``--vision-encoder``).
        word: Short family word in option flags (``{family}`` in ``--{family}-model-name``).
        config_key: The model config fields: ``<key>`` holds the name, ``<key>_conf`` the
            chosen component's options.
    """

    def __init__(self, family: str, flag: str, word: str, config_key: str) -> None:
        self.family = family
        self.flag = flag
        self.word = word
        self.config_key = config_key
        self._specs: Dict[str, ComponentSpec] = {}
        self._aliases: Dict[str, str] = {}

    def add(self, name: str, target: Optional[str], planned: str = "") -> ComponentSpec:
        if name in self._specs or name in self._aliases:
            raise ValueError(f"{self.family} {name!r} is registered twice")
        spec = ComponentSpec(name=name, target=target, planned=planned)
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

    def options(self, name: str) -> Tuple[Option, ...]:
        """The options ``name`` declares (``options`` of its class)."""
        return tuple(getattr(self.resolve_class(name), "options", ()))

    def resolve_options(self, name: str, values: Optional[Mapping[str, Any]]) -> Dict[str, Any]:
        """All options of ``name``: ``values`` checked, the rest defaults."""
        return resolve_options(self.options(name), values, f"{self.family} {self.canonical(name)}")

    def create(self, name: str, config, *args) -> object:
        """Instantiate ``name`` with ``Class.from_config(config, options, *args)``, its
        options taken from ``config.<config_key>_conf``."""
        options = self.resolve_options(name, getattr(config, f"{self.config_key}_conf", None))
        return self.resolve_class(name).from_config(config, options, *args)


VISION_ENCODERS = Registry("vision encoder", "--vision-encoder", "vision", "vision_encoder")
AUDIO_ENCODERS = Registry("audio encoder", "--audio-encoder", "audio", "audio_encoder")
DECODERS = Registry("decoder", "--decoder", "decoder", "decoder")
FUSIONS = Registry("fusion", "--fusion-type", "fusion", "fusion")

MODEL_REGISTRY: Dict[str, Registry] = {
    "vision_encoder": VISION_ENCODERS,
    "audio_encoder": AUDIO_ENCODERS,
    "decoder": DECODERS,
    "fusion": FUSIONS,
}

_FRONTEND = "espnet.nets.pytorch_backend.frontend"
_DECODER = "espnet.nets.pytorch_backend.decoder"
_FUSION = "espnet.nets.pytorch_backend.fusion"

# ---- vision encoders (input: (B, T, 1, 88, 88) mouth crops at 25 fps) ----------------
VISION_ENCODERS.add("resnet", f"{_FRONTEND}.resnet:VideoResNet")
VISION_ENCODERS.add("vit", f"{_FRONTEND}.vision.vit:ViTFrontend")
VISION_ENCODERS.add("vivit", f"{_FRONTEND}.vision.vivit:ViViTFrontend")
VISION_ENCODERS.add("clip-vit", f"{_FRONTEND}.vision.clip_vit:CLIPViTFrontend")

# ---- audio encoders (input: (B, S, 1) waveform at 16 kHz) -----------------------------
AUDIO_ENCODERS.add("resnet1d", f"{_FRONTEND}.resnet1d:AudioResNet1D")
AUDIO_ENCODERS.add("whisper", f"{_FRONTEND}.audio.whisper:WhisperFrontend")
AUDIO_ENCODERS.add("wavlm", f"{_FRONTEND}.audio.wavlm:WavLMFrontend")

# ---- decoders ----------------------------------------------------------------------------
DECODERS.add("transformer", f"{_DECODER}.transformer_decoder:TransformerDecoder")
DECODERS.add("llama", f"{_DECODER}.llama_decoder:LlamaDecoder")
DECODERS.alias("llm", "llama")
DECODERS.add("whisper-decoder", f"{_DECODER}.whisper_decoder:WhisperTextDecoder")

# ---- fusions (two aligned streams -> (B, T, adim)) -------------------------------------
FUSIONS.add("concat", f"{_FUSION}.concat_fusion:ConcatFusion")
FUSIONS.add("add", f"{_FUSION}.add_fusion:AddFusion")
FUSIONS.add("gated", f"{_FUSION}.gated_fusion:GatedFusion")
FUSIONS.add("attention", f"{_FUSION}.attention_fusion:AttentionFusion")
FUSIONS.add("residual", f"{_FUSION}.residual_fusion:ResidualFusion")
FUSIONS.add("bottleneck", f"{_FUSION}.bottleneck_fusion:BottleneckFusion")
