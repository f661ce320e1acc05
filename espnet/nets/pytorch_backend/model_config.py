"""The configuration that fully describes a model; it travels with every checkpoint."""

from dataclasses import asdict, dataclass, fields
from typing import Any, Dict, Optional

LEGACY_MODALITY_ENCODERS = {"video": ("resnet", None), "audio": (None, "resnet1d")}


@dataclass
class ModelConfig:
    """Component names and sizes. Defaults are the Auto-AVSR sizes.

    Attributes:
        odim: Size of the SentencePiece token list (decoder/CTC vocabulary of the
            Transformer decoder); ``None`` for a decoder with its own tokenizer and no
            SentencePiece model.
        vision_encoder / audio_encoder: Registered frontend names; at least one is set.
            Only vision -> video model, only audio -> audio model, both -> audio-visual.
        decoder: Registered decoder name.
        fusion_type: Registered fusion (audio-visual models only).
        bottleneck_tokens / bottleneck_layers: Shared tokens and layers of the
            ``bottleneck`` fusion.
        vision_model_name / audio_model_name / decoder_model_name: Pretrained model ids or
            local directories for pretrained components.
        unfreeze_vision / unfreeze_audio: Train pretrained frontends.
        vision_pool: Per-frame pooling of ViT (``cls``/``mean``) or CLIP-ViT
            (``pooled``/``mean``); ``None`` = the frontend's default.
        whisper_pad_seconds: Append silence to Whisper input up to this many seconds (30 =
            what a pretrained Whisper saw; 0 = real length).
        wavlm_layer_weights: Learned weighted sum of all WavLM hidden layers.
        projection: ``linear`` or ``mlp`` when frontend and encoder sizes differ.
        resnet_width: Base channels of the ResNet frontends (64 = Auto-AVSR).
        adim, aheads, eunits, elayers: Conformer size; dunits, dlayers: decoder size.
        mask_conv_padding: Zero padded frames before the Conformer depthwise convolution
            (exact padding invariance; off reproduces Auto-AVSR numerics).
        elayers 0: no Conformer (the projected/fused frontend output is the encoder
            output); with ``adim`` equal to the frontend size the projection is the
            identity too (used to pair a pretrained Whisper encoder with its decoder).
        llm_prompt: Instruction of the LLaMA decoder (``None`` = per-modality default).
        llm_downsample: Encoder frames stacked per LLaMA soft-prompt token.
        pretrained_dtype: ``float32`` or ``bfloat16`` weights of the pretrained components
            (whatever dtype their checkpoints are stored in).
        use_qlora: Quantise the pretrained components (4-bit NF4) and train LoRA adapters
            on them (applied last, see ``lora/qlora_manager.py``).
        qlora_r / qlora_alpha / qlora_dropout: LoRA rank, scaling numerator, dropout.
        qlora_target_modules: Comma-separated names of the linear layers that get adapters
            (``None`` = the default of each model family, e.g. ``q_proj,k_proj,v_proj,o_proj``).
        qlora_compute_dtype: ``float32`` or ``bfloat16`` compute of the 4-bit layers.
    """

    odim: Optional[int] = 5049
    vision_encoder: Optional[str] = "resnet"
    audio_encoder: Optional[str] = None
    decoder: str = "transformer"
    fusion_type: str = "concat"
    bottleneck_tokens: int = 4
    bottleneck_layers: int = 2
    vision_model_name: Optional[str] = None
    audio_model_name: Optional[str] = None
    decoder_model_name: Optional[str] = None
    unfreeze_vision: bool = False
    unfreeze_audio: bool = False
    vision_pool: Optional[str] = None
    whisper_pad_seconds: float = 0.0
    wavlm_layer_weights: bool = False
    projection: str = "linear"
    resnet_width: int = 64
    adim: int = 768
    aheads: int = 12
    eunits: int = 3072
    elayers: int = 12
    dunits: int = 3072
    dlayers: int = 6
    cnn_module_kernel: int = 31
    dropout_rate: float = 0.1
    lsm_weight: float = 0.1
    ctc_weight: float = 0.1
    mask_conv_padding: bool = False
    llm_prompt: Optional[str] = None
    llm_downsample: int = 1
    pretrained_dtype: str = "float32"
    use_qlora: bool = False
    qlora_r: int = 16
    qlora_alpha: int = 32
    qlora_dropout: float = 0.05
    qlora_target_modules: Optional[str] = None
    qlora_compute_dtype: str = "float32"

    def __post_init__(self) -> None:
        if not self.vision_encoder and not self.audio_encoder:
            raise ValueError("a model needs a vision encoder, an audio encoder, or both")
        if self.projection not in ("linear", "mlp"):
            raise ValueError(f"projection must be 'linear' or 'mlp', got {self.projection!r}")
        if self.bottleneck_tokens < 1 or self.bottleneck_layers < 1:
            raise ValueError(f"--bottleneck-tokens and --bottleneck-layers must be >= 1, got "
                             f"{self.bottleneck_tokens} and {self.bottleneck_layers}")
        if self.llm_downsample < 1:
            raise ValueError(f"llm_downsample must be >= 1, got {self.llm_downsample}")
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

    def to_dict(self) -> Dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: Dict[str, Any]) -> "ModelConfig":
        values = dict(values)
        if "modality" in values:  # configs written before encoders were named
            modality = values.pop("modality")
            if modality not in LEGACY_MODALITY_ENCODERS:
                raise ValueError(f"unknown modality {modality!r} in model config")
            values["vision_encoder"], values["audio_encoder"] = LEGACY_MODALITY_ENCODERS[modality]
        # renamed fields (configs written before the pretrained-checkpoint work)
        if "decoder_dtype" in values:
            values["pretrained_dtype"] = values.pop("decoder_dtype")
        if "whisper_pad_30s" in values:
            values["whisper_pad_seconds"] = 30.0 if values.pop("whisper_pad_30s") else 0.0
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown model config keys: {', '.join(unknown)}")
        return cls(**values)
