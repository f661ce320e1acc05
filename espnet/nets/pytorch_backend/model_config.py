"""The configuration that fully describes a model; it travels with every checkpoint."""

from dataclasses import asdict, dataclass, field, fields
from typing import Any, Dict, List, Optional, Tuple

LEGACY_MODALITY_ENCODERS = {"video": ("resnet", None), "audio": (None, "resnet1d")}

# (config key of the name, config key of the options, registry key)
FAMILIES: Tuple[Tuple[str, str, str], ...] = (
    ("vision_encoder", "vision_encoder_conf", "vision_encoder"),
    ("audio_encoder", "audio_encoder_conf", "audio_encoder"),
    ("decoder", "decoder_conf", "decoder"),
    ("fusion_type", "fusion_conf", "fusion"),
)

# Configs written before components declared their own options held those options as flat
# fields: field -> (families whose chosen component may have it, option name).
FLAT_OPTION_FIELDS: Dict[str, Tuple[Tuple[str, ...], str]] = {
    "resnet_width": (("vision_encoder", "audio_encoder"), "width"),
    "vision_pool": (("vision_encoder",), "pool"),
    "vision_model_name": (("vision_encoder",), "model_name"),
    "audio_model_name": (("audio_encoder",), "model_name"),
    "decoder_model_name": (("decoder",), "model_name"),
    "unfreeze_vision": (("vision_encoder",), "unfreeze"),
    "unfreeze_audio": (("audio_encoder",), "unfreeze"),
    "whisper_pad_seconds": (("audio_encoder",), "pad_seconds"),
    "wavlm_layer_weights": (("audio_encoder",), "layer_weights"),
    "llm_prompt": (("decoder",), "prompt"),
    "llm_downsample": (("decoder",), "downsample"),
    "dunits": (("decoder",), "dunits"),
    "dlayers": (("decoder",), "dlayers"),
}


@dataclass
class ModelConfig:
    """Component names, each chosen component's options, and the model sizes. Defaults are
    the Auto-AVSR video model.

    Attributes:
        odim: Size of the SentencePiece token list (vocabulary of the Transformer decoder
            and its CTC); ``None`` for a decoder with its own tokenizer and no SentencePiece
            model.
        vision_encoder / audio_encoder: Registered frontend names; at least one is set.
            Only vision -> video model, only audio -> audio model, both -> audio-visual.
        decoder: Registered decoder name.
        fusion_type: Registered fusion; audio-visual models only (``concat`` by default).
        vision_encoder_conf / audio_encoder_conf / decoder_conf / fusion_conf: Options of
            the chosen components (declared by each component class next to it, see
            ``component_options.py``); filled with the defaults of those not given, and an
            option the component does not have is an error.
        projection: ``linear`` or ``mlp`` frontend-to-encoder projection of a
            single-stream model when the sizes differ.
        adim, aheads, eunits, elayers, cnn_module_kernel: Conformer size (adim and aheads
            also size the Transformer decoder and the attention fusion). ``elayers 0``: no
            Conformer (the projected/fused frontend output is the encoder output); with
            ``adim`` equal to the frontend size the projection is the identity too (used to
            pair a pretrained Whisper encoder with its decoder).
        dropout_rate, lsm_weight: Dropout everywhere; label smoothing of the attention loss.
        ctc_weight: CTC weight of the hybrid training loss.
        mask_conv_padding: Zero padded frames before the Conformer depthwise convolution
            (exact padding invariance; off reproduces Auto-AVSR numerics).
        pretrained_dtype: ``float32`` or ``bfloat16`` weights of the pretrained components
            (whatever dtype their checkpoints are stored in).
        use_qlora: Quantise the pretrained components (4-bit NF4) and train LoRA adapters
            on them (applied last, see ``lora/qlora_manager.py``).
        qlora_r / qlora_alpha / qlora_dropout: LoRA rank, scaling numerator, dropout.
        qlora_target_modules: Comma-separated names of the linear layers that get adapters
            (``None`` = the default of each model family, e.g. ``q_proj,k_proj,v_proj,o_proj``).
        qlora_compute_dtype: ``float32`` or ``bfloat16`` compute of the 4-bit layers.
        missing_stream_embeddings: Audio-visual models: a learned embedding per stream stands
            in for that stream when an utterance lacks it (``--modality-dropout``, ``eval.py
            --drop-stream``, ``|missing=`` lines). Configs written before it existed load with
            ``False`` (their checkpoints have no such weights, and need both streams).
    """

    odim: Optional[int] = 5049
    vision_encoder: Optional[str] = "resnet"
    audio_encoder: Optional[str] = None
    decoder: str = "transformer"
    fusion_type: Optional[str] = None
    vision_encoder_conf: Dict[str, Any] = field(default_factory=dict)
    audio_encoder_conf: Dict[str, Any] = field(default_factory=dict)
    decoder_conf: Dict[str, Any] = field(default_factory=dict)
    fusion_conf: Dict[str, Any] = field(default_factory=dict)
    projection: str = "linear"
    adim: int = 768
    aheads: int = 12
    eunits: int = 3072
    elayers: int = 12
    cnn_module_kernel: int = 31
    dropout_rate: float = 0.1
    lsm_weight: float = 0.1
    ctc_weight: float = 0.1
    mask_conv_padding: bool = False
    pretrained_dtype: str = "float32"
    use_qlora: bool = False
    qlora_r: int = 16
    qlora_alpha: int = 32
    qlora_dropout: float = 0.05
    qlora_target_modules: Optional[str] = None
    qlora_compute_dtype: str = "float32"
    missing_stream_embeddings: bool = True

    def __post_init__(self) -> None:
        from espnet.nets.pytorch_backend.registry import MODEL_REGISTRY

        if not self.vision_encoder and not self.audio_encoder:
            raise ValueError("a model needs a vision encoder, an audio encoder, or both")
        if self.vision_encoder and self.audio_encoder:
            self.fusion_type = self.fusion_type or "concat"
        elif self.fusion_type:
            raise ValueError(f"--fusion-type {self.fusion_type} applies to audio-visual models only (this is a "
                             f"{self.modality} model: give both --vision-encoder and --audio-encoder to fuse)")
        for name_key, conf_key, registry_key in FAMILIES:
            registry = MODEL_REGISTRY[registry_key]
            name = getattr(self, name_key)
            if not name:
                if getattr(self, conf_key):
                    raise ValueError(f"{conf_key} is set but the model has no {registry.family}")
                continue
            name = registry.canonical(name)
            setattr(self, name_key, name)
            setattr(self, conf_key, registry.resolve_options(name, getattr(self, conf_key)))
        if self.projection not in ("linear", "mlp"):
            raise ValueError(f"projection must be 'linear' or 'mlp', got {self.projection!r}")
        if self.pretrained_dtype not in ("float32", "bfloat16"):
            raise ValueError(f"pretrained_dtype must be 'float32' or 'bfloat16', got {self.pretrained_dtype!r}")
        if self.qlora_compute_dtype not in ("float32", "bfloat16"):
            raise ValueError(f"qlora_compute_dtype must be 'float32' or 'bfloat16', got {self.qlora_compute_dtype!r}")
        if self.qlora_r < 1:
            raise ValueError(f"--qlora-r must be >= 1, got {self.qlora_r}")
        if not 0.0 <= self.qlora_dropout < 1.0:
            raise ValueError(f"--qlora-dropout must be in [0, 1), got {self.qlora_dropout}")

    @property
    def modality(self) -> str:
        if self.vision_encoder and self.audio_encoder:
            return "audiovisual"
        return "video" if self.vision_encoder else "audio"

    def components(self) -> List[Tuple[str, str, Dict[str, Any]]]:
        """``(registry key, name, options)`` of every chosen component."""
        return [(registry_key, getattr(self, name_key), getattr(self, conf_key))
                for name_key, conf_key, registry_key in FAMILIES if getattr(self, name_key)]

    def model_names(self) -> Dict[str, str]:
        """Registry key -> pretrained model id/directory of each chosen component that
        loads one (``model_name`` option; ``None`` = the component's default)."""
        return {key: opts["model_name"] for key, _, opts in self.components() if opts.get("model_name")}

    def describe(self) -> str:
        """One line for messages: modality, components and sizes."""
        parts = [self.vision_encoder or "-", self.audio_encoder or "-"]
        if self.fusion_type:
            parts.append(self.fusion_type)
        return (f"a {self.modality} model ({' / '.join(parts + [self.decoder])}) with adim={self.adim}, "
                f"aheads={self.aheads}, elayers={self.elayers}, odim={self.odim}")

    def to_dict(self) -> Dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: Dict[str, Any]) -> "ModelConfig":
        """A config from a checkpoint: the current layout, or the flat layout written
        before components declared their own options (and its older field names)."""
        values = dict(values)
        if "modality" in values:  # configs written before encoders were named
            modality = values.pop("modality")
            if modality not in LEGACY_MODALITY_ENCODERS:
                raise ValueError(f"unknown modality {modality!r} in model config")
            values["vision_encoder"], values["audio_encoder"] = LEGACY_MODALITY_ENCODERS[modality]
        if "decoder_dtype" in values:  # renamed
            values["pretrained_dtype"] = values.pop("decoder_dtype")
        if "whisper_pad_30s" in values:  # replaced by a length in seconds
            values["whisper_pad_seconds"] = 30.0 if values.pop("whisper_pad_30s") else 0.0
        if any(key in values for key in FLAT_OPTION_FIELDS):
            _nest_flat_options(values)
        values.setdefault("missing_stream_embeddings", False)  # written before they existed
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown model config keys: {', '.join(unknown)}")
        return cls(**values)


def _nest_flat_options(values: Dict[str, Any]) -> None:
    """Move flat option fields into the conf of the chosen component that has the option.
    A flat config stored every field, including options of components it did not use
    (they had no effect on that model, so they are left out); ``None`` meant the
    component's default."""
    from espnet.nets.pytorch_backend.component_options import find
    from espnet.nets.pytorch_backend.registry import MODEL_REGISTRY

    keys = {name_key: (conf_key, registry_key) for name_key, conf_key, registry_key in FAMILIES}
    if not (values.get("vision_encoder") and values.get("audio_encoder")):
        values.pop("fusion_type", None)  # always written; only audio-visual models fuse
    for flat, (families, option) in FLAT_OPTION_FIELDS.items():
        if flat not in values:
            continue
        value = values.pop(flat)
        for family in families:
            name = values.get(family)
            if not name or value is None:
                continue
            conf_key, registry_key = keys[family]
            if find(MODEL_REGISTRY[registry_key].options(name), option) is not None:
                values.setdefault(conf_key, {})[option] = value
