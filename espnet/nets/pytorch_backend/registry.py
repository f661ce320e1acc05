"""One registry per component family: the single place where a name maps to a class and
its static facts.

Adding a component = one new file with a class that has ``from_config(config, options)``
(and, if it has any, its ``options``: see ``component_options.py``) + one ``add(...)`` line
below. The families themselves are listed once, in :data:`MODEL_REGISTRY`: the model config's
fields, the command-line flags and the checkpoint migration all follow from it. Classes are imported lazily (by ``"module:Class"`` path) so that
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
        config_key: The model config field ``<config_key>_conf`` holds the chosen
            component's options.
        help: One line for ``--help`` of ``flag`` (with the default component, if any).

    The model config field that holds the chosen name is the flag's destination
    (``--fusion-type`` -> ``fusion_type``): :attr:`name_field`.
    """

    def __init__(self, family: str, flag: str, word: str, config_key: str, help: str = "") -> None:
        self.family = family
        self.flag = flag
        self.word = word
        self.config_key = config_key
        self.help = help
        self._specs: Dict[str, ComponentSpec] = {}
        self._aliases: Dict[str, str] = {}

    @property
    def name_field(self) -> str:
        """Model config field holding the chosen component's name (``fusion_type``)."""
        return self.flag[2:].replace("-", "_")

    @property
    def conf_field(self) -> str:
        """Model config field holding the chosen component's options (``fusion_conf``)."""
        return f"{self.config_key}_conf"

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
        options = self.resolve_options(name, getattr(config, self.conf_field, None))
        return self.resolve_class(name).from_config(config, options, *args)


VISION_ENCODERS = Registry("vision encoder", "--vision-encoder", "vision", "vision_encoder",
                           help="Vision frontend (input: 88x88 mouth crops at 25 fps).")
AUDIO_ENCODERS = Registry("audio encoder", "--audio-encoder", "audio", "audio_encoder",
                          help="Audio frontend (input: 16 kHz waveform).")
ENCODERS = Registry("encoder", "--encoder", "encoder", "encoder",
                    help="Sequence encoder on the projected/fused frontend features ('none' = they go to the "
                         "decoder and CTC as they are). (Default: conformer)")
DECODERS = Registry("decoder", "--decoder", "decoder", "decoder",
                    help="Decoder ('llm' = 'llama'). (Default: transformer)")
FUSIONS = Registry("fusion", "--fusion-type", "fusion", "fusion",
                   help="How audio-visual models fuse the two streams (both encoders given). (Default: concat)")

#: Every component family, the one list of them: registry key -> registry, in the order of the
#: model (frontends, encoder, decoder, then the fusion of audio-visual models).
MODEL_REGISTRY: Dict[str, Registry] = {
    "vision_encoder": VISION_ENCODERS,
    "audio_encoder": AUDIO_ENCODERS,
    "encoder": ENCODERS,
    "decoder": DECODERS,
    "fusion": FUSIONS,
}

_FRONTEND = "espnet.nets.pytorch_backend.frontend"
_ENCODER = "espnet.nets.pytorch_backend.encoder"
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
AUDIO_ENCODERS.add("logmel", f"{_FRONTEND}.audio.logmel:LogMelFrontend")

# ---- encoders (projected/fused features (B, T, adim) -> (B, T, adim)) -------------------
ENCODERS.add("conformer", f"{_ENCODER}.conformer_encoder:ConformerEncoder")
ENCODERS.add("transformer", f"{_ENCODER}.transformer_encoder:TransformerEncoder")
ENCODERS.add("none", f"{_ENCODER}.identity_encoder:IdentityEncoder")

# ---- decoders ----------------------------------------------------------------------------
DECODERS.add("transformer", f"{_DECODER}.transformer_decoder:TransformerDecoder")
DECODERS.add("llama", f"{_DECODER}.llama_decoder:LlamaDecoder")
DECODERS.alias("llm", "llama")
DECODERS.add("whisper-decoder", f"{_DECODER}.whisper_decoder:WhisperTextDecoder")
DECODERS.add("paraformer", f"{_DECODER}.paraformer_decoder:ParaformerDecoder")

# ---- fusions (two aligned streams -> (B, T, adim)) -------------------------------------
FUSIONS.add("concat", f"{_FUSION}.concat_fusion:ConcatFusion")
FUSIONS.add("add", f"{_FUSION}.add_fusion:AddFusion")
FUSIONS.add("gated", f"{_FUSION}.gated_fusion:GatedFusion")
FUSIONS.add("attention", f"{_FUSION}.attention_fusion:AttentionFusion")
FUSIONS.add("residual", f"{_FUSION}.residual_fusion:ResidualFusion")
FUSIONS.add("bottleneck", f"{_FUSION}.bottleneck_fusion:BottleneckFusion")
