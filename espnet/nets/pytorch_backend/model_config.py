"""The configuration that fully describes a model; it travels with every checkpoint."""

from dataclasses import asdict, dataclass, field, fields
from typing import Any, Dict, List, Optional, Tuple

from espnet.nets.pytorch_backend.registry import MODEL_REGISTRY

#: Layout written by :meth:`ModelConfig.to_dict` (its ``config_version``); :func:`migrate_config`
#: upgrades the older ones:
#:
#: 0. ``modality`` (``video``/``audio``) instead of encoder names (the original recipe);
#: 1. one flat list of fields, every component's options among them (main 9b712e9);
#: 2. each component's options in ``<family>_conf``, but the Conformer's sizes as top-level
#:    fields ``eunits``, ``elayers`` (0 = no Conformer), ``cnn_module_kernel``,
#:    ``mask_conv_padding`` (main 6f72fe5);
#: 3. the encoder a registry family like the others: ``encoder`` + ``encoder_conf``.
CONFIG_VERSION = 3

LEGACY_MODALITY_ENCODERS = {"video": ("resnet", None), "audio": (None, "resnet1d")}


def families() -> Tuple[Tuple[str, str, str], ...]:
    """``(name field, conf field, registry key)`` of every component family, in the order
    of :data:`~espnet.nets.pytorch_backend.registry.MODEL_REGISTRY` (the one list of them)."""
    return tuple((registry.name_field, registry.conf_field, key) for key, registry in MODEL_REGISTRY.items())


# Fields of the older layouts that are options of a component now: field -> (name fields of
# the families whose chosen component may have it, option name).
FLAT_OPTION_FIELDS: Dict[str, Tuple[Tuple[str, ...], str]] = {  # layout 1
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
ENCODER_FIELDS: Dict[str, Tuple[Tuple[str, ...], str]] = {  # layouts 1 and 2 (the bottleneck fusion read eunits)
    "eunits": (("encoder", "fusion_type"), "linear_units"),
    "elayers": (("encoder",), "num_blocks"),
    "cnn_module_kernel": (("encoder",), "cnn_module_kernel"),
    "mask_conv_padding": (("encoder",), "mask_conv_padding"),
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
        encoder: Registered encoder name (``conformer``; ``none`` = the projected/fused
            frontend output is the encoder output, e.g. a pretrained Whisper encoder
            feeding its own decoder).
        decoder: Registered decoder name.
        fusion_type: Registered fusion; audio-visual models only (``concat`` by default).
        vision_encoder_conf / audio_encoder_conf / encoder_conf / decoder_conf / fusion_conf:
            Options of the chosen components (declared by each component class next to it,
            see ``component_options.py``); filled with the defaults of those not given, and
            an option the component does not have is an error.
        projection: ``linear`` or ``mlp`` frontend-to-encoder projection of a
            single-stream model when the sizes differ.
        adim: Model width: the frontend output is projected (or fused) to it, and the
            encoder, CTC head and decoder work at it (with ``adim`` equal to the frontend
            size the projection is the identity, used to pair a pretrained Whisper encoder
            with its decoder).
        aheads: Attention heads of every attention layer at that width (encoder,
            Transformer decoder, attention and bottleneck fusions), as in Auto-AVSR.
        dropout_rate, lsm_weight: Dropout everywhere; label smoothing of the attention loss.
        ctc_weight: CTC weight of the hybrid training loss.
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

    The constructor takes the current layout; :meth:`from_dict` takes any layout a
    checkpoint was written with (see :func:`migrate_config`).
    """

    odim: Optional[int] = 5049
    vision_encoder: Optional[str] = "resnet"
    audio_encoder: Optional[str] = None
    encoder: str = "conformer"
    decoder: str = "transformer"
    fusion_type: Optional[str] = None
    vision_encoder_conf: Dict[str, Any] = field(default_factory=dict)
    audio_encoder_conf: Dict[str, Any] = field(default_factory=dict)
    encoder_conf: Dict[str, Any] = field(default_factory=dict)
    decoder_conf: Dict[str, Any] = field(default_factory=dict)
    fusion_conf: Dict[str, Any] = field(default_factory=dict)
    projection: str = "linear"
    adim: int = 768
    aheads: int = 12
    dropout_rate: float = 0.1
    lsm_weight: float = 0.1
    ctc_weight: float = 0.1
    pretrained_dtype: str = "float32"
    use_qlora: bool = False
    qlora_r: int = 16
    qlora_alpha: int = 32
    qlora_dropout: float = 0.05
    qlora_target_modules: Optional[str] = None
    qlora_compute_dtype: str = "float32"
    missing_stream_embeddings: bool = True

    def __post_init__(self) -> None:
        if not self.vision_encoder and not self.audio_encoder:
            raise ValueError("a model needs a vision encoder, an audio encoder, or both")
        if not self.encoder:
            raise ValueError("a model needs an encoder ('none' for no encoder layers)")
        if self.vision_encoder and self.audio_encoder:
            self.fusion_type = self.fusion_type or "concat"
        elif self.fusion_type:
            raise ValueError(f"--fusion-type {self.fusion_type} applies to audio-visual models only (this is a "
                             f"{self.modality} model: give both --vision-encoder and --audio-encoder to fuse)")
        for name_key, conf_key, registry_key in families():
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
                for name_key, conf_key, registry_key in families() if getattr(self, name_key)]

    def model_names(self) -> Dict[str, str]:
        """Registry key -> pretrained model id/directory of each chosen component that
        loads one (``model_name`` option; ``None`` = the component's default)."""
        return {key: opts["model_name"] for key, _, opts in self.components() if opts.get("model_name")}

    def describe_encoder(self) -> str:
        """``conformer (linear_units=64, num_blocks=1, ...)`` / ``none``."""
        options = ", ".join(f"{key}={value}" for key, value in self.encoder_conf.items())
        return f"{self.encoder} ({options})" if options else self.encoder

    def describe(self) -> str:
        """One line for messages: modality, components and sizes."""
        parts = [self.vision_encoder or "-", self.audio_encoder or "-"]
        if self.fusion_type:
            parts.append(self.fusion_type)
        return (f"a {self.modality} model ({' / '.join(parts + [self.decoder])}) with adim={self.adim}, "
                f"aheads={self.aheads}, odim={self.odim}, encoder {self.describe_encoder()}")

    def to_dict(self) -> Dict[str, Any]:
        """What a checkpoint stores: the layout version and every field."""
        return {"config_version": CONFIG_VERSION, **asdict(self)}

    @classmethod
    def from_dict(cls, values: Dict[str, Any]) -> "ModelConfig":
        """A config from a checkpoint, in any layout it was written with (see
        :func:`migrate_config`)."""
        values = migrate_config(values)
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown model config keys: {', '.join(unknown)}")
        return cls(**values)


def _check_families() -> None:
    """Every registered family has its two fields in :class:`ModelConfig` (a family added to
    the registry needs them: ``<name field>`` and ``<conf field>``)."""
    have = {f.name for f in fields(ModelConfig)}
    for name_key, conf_key, registry_key in families():
        missing = [key for key in (name_key, conf_key) if key not in have]
        if missing:
            raise TypeError(f"registry family {registry_key!r} needs the ModelConfig field(s) {', '.join(missing)}")


_check_families()


def migrate_config(values: Dict[str, Any]) -> Dict[str, Any]:
    """A stored model config (a dict of any layout, see :data:`CONFIG_VERSION`) in the
    current layout: the fields :class:`ModelConfig` takes. The input is not modified.

    Layouts without ``config_version`` are recognised by their fields: ``modality``
    becomes encoder names; old field names are renamed; the flat option fields and the
    Conformer's top-level sizes move into the options of the chosen component that has them
    (``elayers 0``, no Conformer, becomes ``encoder none``; the bottleneck fusion keeps the
    ``eunits`` it was built with); a config written before the missing-stream embeddings
    has none.
    """
    values = dict(values)
    version = values.pop("config_version", None)
    if version is not None:
        if not isinstance(version, int) or isinstance(version, bool) or not 0 <= version <= CONFIG_VERSION:
            raise ValueError(f"model config version {version!r} is not one this code reads (0 to {CONFIG_VERSION}; "
                             "a newer version of the code wrote it?)")
        if version == CONFIG_VERSION:
            return values
    if "modality" in values:  # layout 0: configs written before encoders were named
        modality = values.pop("modality")
        if modality not in LEGACY_MODALITY_ENCODERS:
            raise ValueError(f"unknown modality {modality!r} in model config")
        values["vision_encoder"], values["audio_encoder"] = LEGACY_MODALITY_ENCODERS[modality]
    if "decoder_dtype" in values:  # renamed
        values["pretrained_dtype"] = values.pop("decoder_dtype")
    if "whisper_pad_30s" in values:  # replaced by a length in seconds
        values["whisper_pad_seconds"] = 30.0 if values.pop("whisper_pad_30s") else 0.0
    if "encoder" not in values and any(key in values for key in ENCODER_FIELDS):  # layouts 1 and 2
        values["encoder"] = "none" if values.get("elayers") == 0 else "conformer"
    moved = {key: spec for key, spec in {**FLAT_OPTION_FIELDS, **ENCODER_FIELDS}.items() if key in values}
    if moved:
        _nest_flat_options(values, moved)
    values.setdefault("missing_stream_embeddings", False)  # written before they existed
    return values


def _nest_flat_options(values: Dict[str, Any], moved: Dict[str, Tuple[Tuple[str, ...], str]]) -> None:
    """Move the fields ``moved`` into the conf of the chosen component that has the option.
    A flat config stored every field, including options of components it did not use
    (they had no effect on that model, so they are left out); ``None`` meant the
    component's default."""
    from espnet.nets.pytorch_backend.component_options import find

    keys = {name_key: (conf_key, registry_key) for name_key, conf_key, registry_key in families()}
    if not (values.get("vision_encoder") and values.get("audio_encoder")):
        values.pop("fusion_type", None)  # always written by layout 1; only audio-visual models fuse
    for flat, (name_keys, option) in moved.items():
        value = values.pop(flat)
        for name_key in name_keys:
            name = values.get(name_key)
            if not name or value is None:
                continue
            conf_key, registry_key = keys[name_key]
            if find(MODEL_REGISTRY[registry_key].options(name), option) is not None:
                values[conf_key] = {**(values.get(conf_key) or {}), option: value}
