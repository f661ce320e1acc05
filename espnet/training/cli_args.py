"""Model flags shared by ``train.py`` and ``eval.py`` and their resolution into a
:class:`ModelConfig` (from flags, from a checkpoint, or inferred from legacy weights)."""

import argparse
import sys
from typing import Any, Dict, Iterable, Optional, Tuple

from espnet.nets.pytorch_backend.model_config import LEGACY_MODALITY_ENCODERS, ModelConfig
from espnet.nets.pytorch_backend.registry import AUDIO_ENCODERS, DECODERS, FUSIONS, VISION_ENCODERS

SIZE_FLAGS = ("adim", "aheads", "eunits", "elayers", "dunits", "dlayers", "resnet_width")
NAME_FLAGS = ("vision_model_name", "audio_model_name", "decoder_model_name")
CHOICE_FLAGS = ("vision_encoder", "audio_encoder", "decoder", "fusion_type", "projection", "vision_pool")
LLM_FLAGS = ("llm_prompt", "llm_downsample")
QLORA_FLAGS = ("use_qlora", "qlora_r", "qlora_alpha", "qlora_dropout", "qlora_target_modules")
SWITCH_FLAGS = ("unfreeze_vision", "unfreeze_audio", "mask_conv_padding", "wavlm_layer_weights")
OPTION_FLAGS = ("whisper_pad_seconds", "bottleneck_tokens", "bottleneck_layers")
BOTTLENECK_FLAGS = ("bottleneck_tokens", "bottleneck_layers")


def _flag(field: str) -> str:
    return "--" + field.replace("_", "-")


def add_model_args(parser: argparse.ArgumentParser) -> None:
    """Component and size flags; every default is ``None`` so that explicitly given flags
    can be told apart (and checked against a checkpoint's config)."""
    d = ModelConfig()
    g = parser.add_argument_group("model")
    g.add_argument("--vision-encoder", choices=VISION_ENCODERS.choices(), default=None,
                   help="Vision frontend (input: 88x88 mouth crops at 25 fps).")
    g.add_argument("--audio-encoder", choices=AUDIO_ENCODERS.choices(), default=None,
                   help="Audio frontend (input: 16 kHz waveform).")
    g.add_argument("--decoder", choices=DECODERS.choices(), default=None,
                   help="Decoder ('llm' = 'llama'). (Default: transformer)")
    g.add_argument("--fusion-type", choices=FUSIONS.choices(), default=None,
                   help="How audio-visual models fuse the two streams. (Default: concat)")
    g.add_argument("--bottleneck-tokens", type=int, default=None,
                   help=f"Shared tokens of --fusion-type bottleneck. (Default: {d.bottleneck_tokens})")
    g.add_argument("--bottleneck-layers", type=int, default=None,
                   help=f"Fusion layers of --fusion-type bottleneck. (Default: {d.bottleneck_layers})")
    g.add_argument("--modality", choices=sorted(LEGACY_MODALITY_ENCODERS), default=None,
                   help="Deprecated: video = --vision-encoder resnet, audio = --audio-encoder resnet1d "
                        "(with --decoder transformer).")
    for field, what in zip(NAME_FLAGS, ("vision", "audio", "decoder")):
        g.add_argument(_flag(field), default=None,
                       help=f"Hugging Face id or local directory of the pretrained {what} model.")
    g.add_argument("--unfreeze-vision", action="store_const", const=True, default=None,
                   help="Train the pretrained vision frontend (frozen by default).")
    g.add_argument("--unfreeze-audio", action="store_const", const=True, default=None,
                   help="Train the pretrained audio frontend (frozen by default).")
    g.add_argument("--vision-pool", choices=["cls", "mean", "pooled"], default=None,
                   help="Per-frame pooling: vit cls|mean (default cls), clip-vit pooled|mean (default pooled).")
    g.add_argument("--whisper-pad-seconds", type=float, default=None, metavar="S",
                   help="Append silence to each clip up to S seconds before the Whisper encoder (0 < S <= 30; "
                        "the silence counts as input). A pretrained Whisper decoder needs it to see where speech "
                        "ends. (Default: 0 = real length)")
    g.add_argument("--whisper-pad-30s", dest="whisper_pad_seconds", action="store_const", const=30.0,
                   help="= --whisper-pad-seconds 30: exactly Whisper's own input (WhisperFeatureExtractor).")
    g.add_argument("--wavlm-layer-weights", action="store_const", const=True, default=None,
                   help="Use a learned weighted sum of all WavLM hidden layers (default: last layer).")
    g.add_argument("--projection", choices=["linear", "mlp"], default=None,
                   help="Frontend-to-encoder projection when sizes differ. (Default: linear)")
    g.add_argument("--mask-conv-padding", action="store_const", const=True, default=None,
                   help="Zero padded frames before the Conformer convolution (exact padding invariance; "
                        "off by default to reproduce Auto-AVSR numerics).")
    for field in SIZE_FLAGS:
        g.add_argument(_flag(field), type=int, default=None,
                       help=f"Model size {field} (default {getattr(d, field)}, the Auto-AVSR size)."
                       + (" 0 = no Conformer (frontend output goes to the decoder)." if field == "elayers" else ""))
    g.add_argument("--llm-prompt", default=None,
                   help="Instruction after the soft prompt of --decoder llama. (Default per modality: "
                        "'Transcribe the video to text.' / 'Transcribe the audio to text.' / "
                        "'Transcribe the audio and video to text.')")
    g.add_argument("--llm-downsample", type=int, default=None,
                   help="Stack K encoder frames per LLM soft-prompt token (lengths ceil(len/K)). (Default: 1)")

    q = parser.add_argument_group("QLoRA (4-bit NF4 pretrained components + LoRA adapters)")
    q.add_argument("--use-qlora", action="store_const", const=True, default=None,
                   help="Quantise the pretrained components (vit, vivit, clip-vit, whisper, wavlm, llama, "
                        "whisper-decoder) to 4-bit NF4 and train LoRA adapters on them; new modules stay "
                        "full precision. Applied last, after the model is built.")
    q.add_argument("--qlora-r", type=int, default=None, help=f"LoRA rank. (Default: {d.qlora_r})")
    q.add_argument("--qlora-alpha", type=int, default=None,
                   help=f"LoRA alpha (adapter scaling alpha / r). (Default: {d.qlora_alpha})")
    q.add_argument("--qlora-dropout", type=float, default=None, help=f"LoRA dropout. (Default: {d.qlora_dropout})")
    q.add_argument("--qlora-target-modules", default=None,
                   help="Comma-separated linear layer names that get adapters, e.g. q_proj,v_proj. (Default: the "
                        "attention projections of each pretrained model: q_proj,k_proj,v_proj,o_proj for LLaMA "
                        "and ViT; q_proj,k_proj,v_proj,out_proj for Whisper, WavLM, CLIP)")


def add_generate_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--max-new-tokens", type=int, default=64,
                        help="Most tokens generated per utterance by --decoder llama / whisper-decoder. (Default: 64)")


def add_failure_args(parser: argparse.ArgumentParser, work: str) -> None:
    """``--skip-invalid`` (pre-flight check of the label lists) and ``--debug``; ``work`` is
    what the check comes before (``training`` / ``decoding``)."""
    parser.add_argument("--skip-invalid", action="store_true",
                        help="Leave out the label-list lines that fail the pre-flight check (they are listed) "
                             f"instead of stopping before {work}.")
    parser.add_argument("--debug", action="store_true", help="Debug-level logging; tracebacks on errors.")


def add_tokenizer_args(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("tokenizer")
    g.add_argument("--sp-model-path", default=None, help="SentencePiece model (e.g. unigram5000.model).")
    g.add_argument("--dict-path", default=None, help="Units list matching --sp-model-path ('<piece> <id>' per line).")


def load_tokenizer(sp_model_path: Optional[str], dict_path: Optional[str]):
    """The SentencePiece tokenizer of ``--sp-model-path`` + ``--dict-path``, or ``None``
    when neither is given (a decoder with its own tokenizer needs none; a decoder that
    does says so when the model is built)."""
    from datamodule.text_transform import TextTransform

    if sp_model_path is None and dict_path is None:
        return None
    if sp_model_path is None or dict_path is None:
        given, missing = ("--sp-model-path", "--dict-path") if dict_path is None else ("--dict-path", "--sp-model-path")
        raise ValueError(f"{given} is given without {missing}: a SentencePiece tokenizer needs both")
    return TextTransform(sp_model_path, dict_path)


def given_model_fields(args: argparse.Namespace) -> Tuple[Dict[str, Any], Optional[str]]:
    """ModelConfig fields set by explicit flags, and the deprecated ``--modality`` (checked
    against the encoder flags, with a deprecation notice)."""
    fields = {f: getattr(args, f) for f in SIZE_FLAGS + NAME_FLAGS + CHOICE_FLAGS + SWITCH_FLAGS + OPTION_FLAGS
              + LLM_FLAGS + QLORA_FLAGS if getattr(args, f, None) is not None}
    for key, registry in (("vision_encoder", VISION_ENCODERS), ("audio_encoder", AUDIO_ENCODERS),
                          ("decoder", DECODERS), ("fusion_type", FUSIONS)):
        if key in fields:
            fields[key] = registry.canonical(fields[key])
    modality = getattr(args, "modality", None)
    if modality is None:
        return fields, None
    vision, audio = LEGACY_MODALITY_ENCODERS[modality]
    print(f"note: --modality is deprecated; --modality {modality} means "
          f"{_flag('vision_encoder') + ' ' + vision if vision else _flag('audio_encoder') + ' ' + audio} "
          f"--decoder transformer", file=sys.stderr)
    has_vision, has_audio = "vision_encoder" in fields, "audio_encoder" in fields
    if (modality == "video" and has_audio) or (modality == "audio" and has_vision):
        other = "--audio-encoder" if modality == "video" else "--vision-encoder"
        raise ValueError(f"--modality {modality} contradicts {other} {fields[other[2:].replace('-', '_')]}")
    return fields, modality


def infer_legacy_modality(state_keys: Iterable[str]) -> Optional[str]:
    """``video``/``audio`` for an Auto-AVSR state dict (by its frontend keys), else ``None``."""
    keys = set(state_keys)
    if any(k.startswith("frontend.frontend3D.") for k in keys):
        return "video"
    if "frontend.trunk.conv1.weight" in keys:
        return "audio"
    return None


def resolve_model_config(args: argparse.Namespace, odim: Optional[int], stored: Optional[Dict[str, Any]] = None,
                         source: str = "checkpoint", state_keys: Optional[Iterable[str]] = None) -> ModelConfig:
    """The model config to build. ``odim``: size of the SentencePiece tokenizer, ``None``
    without one (allowed for a decoder with its own tokenizer).

    * ``stored`` (a checkpoint of ours): that config; an explicit flag that disagrees is an error.
    * otherwise from the flags; with no encoder flag, the modality of legacy weights
      (``state_keys``) is used, else an error asks for encoder flags.
    """
    given, modality = given_model_fields(args)
    config = _resolve(given, modality, odim, stored, source, state_keys)
    extra = [_flag(f) for f in QLORA_FLAGS[1:] if f in given]
    if extra and not config.use_qlora:
        raise ValueError(f"{', '.join(extra)} only apply with --use-qlora")
    extra = [_flag(f) for f in BOTTLENECK_FLAGS if f in given]
    if extra and not (config.modality == "audiovisual" and config.fusion_type == "bottleneck"):
        raise ValueError(f"{', '.join(extra)} only apply to an audio-visual model with --fusion-type bottleneck")
    return config


def _resolve(given: Dict[str, Any], modality: Optional[str], odim: Optional[int], stored: Optional[Dict[str, Any]],
             source: str, state_keys: Optional[Iterable[str]]) -> ModelConfig:
    if stored is not None:
        config = ModelConfig.from_dict(dict(stored))
        if modality is not None and modality != config.modality:
            raise ValueError(f"--modality {modality} contradicts the {source}, which is a {config.modality} model")
        for field, value in given.items():
            if field in NAME_FLAGS and getattr(config, field) != value:
                # the pretrained model moved (another machine / directory): use the new
                # place; a --use-qlora checkpoint still checks that the weights are the same
                print(f"note: {_flag(field)} {value} replaces the {source}'s {getattr(config, field)}",
                      file=sys.stderr)
                setattr(config, field, value)
            elif getattr(config, field) != value:
                raise ValueError(f"{_flag(field)} {value} contradicts the {source}, which was trained with "
                                 f"{field}={getattr(config, field)}")
        if odim is not None and config.odim is not None and config.odim != odim:
            raise ValueError(f"the tokenizer has {odim} tokens but the {source} model has odim {config.odim}")
        return config
    if modality is not None and "vision_encoder" not in given and "audio_encoder" not in given:
        given["vision_encoder"], given["audio_encoder"] = LEGACY_MODALITY_ENCODERS[modality]
    if "vision_encoder" not in given and "audio_encoder" not in given:
        legacy = infer_legacy_modality(state_keys) if state_keys is not None else None
        if legacy is None:
            raise ValueError("choose the input: --vision-encoder and/or --audio-encoder (or the legacy --modality)")
        given["vision_encoder"], given["audio_encoder"] = LEGACY_MODALITY_ENCODERS[legacy]
    given.setdefault("vision_encoder", None)
    given.setdefault("audio_encoder", None)
    return ModelConfig(odim=odim, **given)
