"""Model flags shared by ``train.py`` and ``eval.py`` and their resolution into a
:class:`ModelConfig` (from flags, from a checkpoint, or inferred from legacy weights).

Component options are not listed here: every registered component declares its own
(``options`` next to its class), and their flags are built from the registries. A flag
sets the option of every chosen component that declares it; a flag that no chosen
component declares is an error.
"""

import argparse
import dataclasses
import sys
from dataclasses import dataclass, field
from typing import Any, Dict, Iterable, List, Optional, Tuple

from espnet.nets.pytorch_backend.component_options import Option
from espnet.nets.pytorch_backend.model_config import LEGACY_MODALITY_ENCODERS, ModelConfig, families
from espnet.nets.pytorch_backend.registry import MODEL_REGISTRY, Registry

SIZE_FIELDS = ("adim", "aheads")
MODEL_FIELDS = SIZE_FIELDS + ("projection",)
QLORA_FIELDS = ("use_qlora", "qlora_r", "qlora_alpha", "qlora_dropout", "qlora_target_modules")


def name_fields() -> Tuple[str, ...]:
    """Model config fields (and flag destinations) naming the chosen components, one per
    registry family (``vision_encoder``, ..., ``fusion_type``)."""
    return tuple(name_key for name_key, _, _ in families())


def _field_default(name: str) -> Any:
    return next(f.default for f in dataclasses.fields(ModelConfig) if f.name == name)


def _flag(field_name: str) -> str:
    return "--" + field_name.replace("_", "-")


@dataclass
class ComponentFlag:
    """A command-line flag of component options: ``users`` are the ``(registry, component,
    option)`` that declare it (several components may share one flag)."""

    flag: str
    dest: str
    users: List[Tuple[Registry, str, Option]] = field(default_factory=list)

    @property
    def option(self) -> Option:
        return self.users[0][2]

    def help(self) -> str:
        first = self.users[0]
        text = first[2].help.replace("{family}", first[0].word)
        parts = []
        for registry, name, option in self.users:
            choices = f" of {'|'.join(map(str, option.choices))}" if option.choices else ""
            default = option.default
            if default is None and option.name == "model_name":
                default = registry.resolve_class(name).default_model_name
            parts.append(f"{registry.family} {name}: default {default}{choices}")
        return f"{text} [{'; '.join(parts)}]"


def component_flags() -> Dict[str, ComponentFlag]:
    """Every flag of every available registered component's options, in registry order."""
    flags: Dict[str, ComponentFlag] = {}
    for registry in MODEL_REGISTRY.values():
        for name in registry.available():
            for option in registry.options(name):
                flag = option.flag_for(name, registry.word)
                entry = flags.setdefault(flag, ComponentFlag(flag, flag[2:].replace("-", "_")))
                if entry.users and entry.option.type is not option.type:
                    raise TypeError(f"{flag}: {registry.family} {name} declares it as {option.type.__name__}, "
                                    f"{entry.users[0][0].family} {entry.users[0][1]} as "
                                    f"{entry.option.type.__name__}")
                entry.users.append((registry, name, option))
    return flags


def add_model_args(parser: argparse.ArgumentParser) -> None:
    """Component, size and option flags; every default is ``None`` so that explicitly given
    flags can be told apart (and checked against a checkpoint's config)."""
    g = parser.add_argument_group("model")
    for registry in MODEL_REGISTRY.values():  # one flag per component family
        g.add_argument(registry.flag, choices=registry.choices(), default=None, help=registry.help)
    g.add_argument("--modality", choices=sorted(LEGACY_MODALITY_ENCODERS), default=None,
                   help="Deprecated: video = --vision-encoder resnet, audio = --audio-encoder resnet1d "
                        "(with --decoder transformer).")
    g.add_argument("--projection", choices=["linear", "mlp"], default=None,
                   help="Frontend-to-encoder projection of a single-stream model when sizes differ. (Default: linear)")
    g.add_argument("--adim", type=int, default=None,
                   help=f"Model width: frontends are projected (or fused) to it; the encoder, CTC head and decoder "
                        f"work at it. (Default: {_field_default('adim')}, the Auto-AVSR size)")
    g.add_argument("--aheads", type=int, default=None,
                   help=f"Attention heads of the encoder, the Transformer decoder and the attention/bottleneck "
                        f"fusions. (Default: {_field_default('aheads')}, the Auto-AVSR size)")

    o = parser.add_argument_group("component options (each applies only when its component is chosen)")
    for entry in component_flags().values():
        option = entry.option
        if option.type is bool:
            o.add_argument(entry.flag, dest=entry.dest, action="store_const", const=True, default=None,
                           help=entry.help())
        else:
            choices = sorted({c for _, _, opt in entry.users for c in (opt.choices or ())}) or None
            o.add_argument(entry.flag, dest=entry.dest, type=option.type, choices=choices, default=None,
                           metavar=None if choices else option.type.__name__.upper(), help=entry.help())
        for alias, value in option.aliases:
            o.add_argument(alias, dest=entry.dest, action="store_const", const=value,
                           help=f"= {entry.flag} {value}")

    q = parser.add_argument_group("QLoRA (4-bit NF4 pretrained components + LoRA adapters)")
    q.add_argument("--use-qlora", action="store_const", const=True, default=None,
                   help="Quantise the pretrained components (vit, vivit, clip-vit, whisper, wavlm, llama, "
                        "whisper-decoder) to 4-bit NF4 and train LoRA adapters on them; new modules stay "
                        "full precision. Applied last, after the model is built.")
    q.add_argument("--qlora-r", type=int, default=None, help=f"LoRA rank. (Default: {_field_default('qlora_r')})")
    q.add_argument("--qlora-alpha", type=int, default=None,
                   help=f"LoRA alpha (adapter scaling alpha / r). (Default: {_field_default('qlora_alpha')})")
    q.add_argument("--qlora-dropout", type=float, default=None, help=f"LoRA dropout. (Default: {_field_default('qlora_dropout')})")
    q.add_argument("--qlora-target-modules", default=None,
                   help="Comma-separated linear layer names that get adapters, e.g. q_proj,v_proj. (Default: the "
                        "attention projections of each pretrained model: q_proj,k_proj,v_proj,o_proj for LLaMA "
                        "and ViT; q_proj,k_proj,v_proj,out_proj for Whisper and CLIP; the feed-forward layers "
                        "of WavLM)")


def add_generate_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--max-new-tokens", type=int, default=64,
                        help="Most tokens per utterance in decoding with --decoder llama / whisper-decoder (the "
                             "transformer decoder ends at the encoder length). (Default: 64)")


def add_paraformer_decoding_args(parser: argparse.ArgumentParser) -> None:
    """``--nar-candidates``, ``--penalty``, ``--nar-count``, ``--nar-scorer``,
    ``--nar-alternatives``, ``--nar-ctc-candidate``, ``--nar-ar-top`` and ``--nar-ctc-fusion`` (eval.py,
    transcribe.py, the service):
    how a Paraformer's one-pass hypotheses are chosen, and the length bonus."""
    from espnet.nets.pytorch_backend.decoder.base_decoder import NAR_COUNTS, NAR_SCORERS

    parser.add_argument("--nar-candidates", type=int, default=1,
                        help="Paraformer: decode this many hypotheses, one parallel pass each for the token counts "
                             "nearest the predicted one (n, n-1, n+1, ...), and keep the best by --ctc-weight x the "
                             "CTC head's log-likelihood + (1 - --ctc-weight) x the decoder's + --penalty per token "
                             "(a Paraformer with --paraformer-queries ctc: one pass each at the CTC head's best path "
                             "with 0, 1, ..., N-1 nats taken off the blank); 1 = the single pass. (Default: 1)")
    parser.add_argument("--penalty", type=float, default=0.0,
                        help="Length bonus per token, added to every hypothesis's score: the joint beam search's, "
                             "and a Paraformer's --nar-candidates'. (Default: 0)")
    parser.add_argument("--nar-count", choices=NAR_COUNTS, default="cif",
                        help="Paraformer: the predicted token count the single pass or the --nar-candidates are "
                             "taken around: cif, the tokens its CIF predictor fires; ctc, the length of its CTC "
                             "head's best path (the CIF weights rescaled to it); both, the candidates around each. "
                             "(Default: cif)")
    parser.add_argument("--nar-scorer", choices=NAR_SCORERS, default="paraformer",
                        help="Paraformer: the decoder term of the --nar-candidates' score: the Paraformer's own "
                             "token log-probabilities; ar, the log-likelihood its auxiliary autoregressive decoder "
                             "gives them (one parallel pass; a model trained with --paraformer-ar-dlayers); both, "
                             "the mean of the two. (Default: paraformer)")
    parser.add_argument("--nar-alternatives", type=int, default=0,
                        help="Paraformer: besides each of the --nar-candidates, this many more with the token at one "
                             "of its least confident positions replaced by the second best, scored with them "
                             "(needs a trained CTC head). (Default: 0)")
    parser.add_argument("--nar-ctc-candidate", action="store_true",
                        help="Paraformer: the CTC head's best path joins the hypotheses, scored with them (its "
                             "Paraformer term from one more pass at its token count).")
    parser.add_argument("--nar-ar-top", type=int, default=0,
                        help="Paraformer, with --nar-scorer ar or both: the auxiliary decoder scores only each "
                             "utterance's N best hypotheses by the score with the Paraformer's own term, and the "
                             "best of those is kept; 0 = it scores them all. (Default: 0)")
    parser.add_argument("--nar-ctc-fusion", type=float, default=0.0,
                        help="Paraformer, with --nar-count ctc or both: in the hypotheses with as many tokens as the "
                             "CTC head's best path, each token is chosen by its Paraformer log-probability + this "
                             "weight x its CTC log-posterior at the frames of the path's token in that place; 0 = "
                             "the Paraformer's argmax. (Default: 0)")


def paraformer_decoding_values(args: argparse.Namespace) -> Dict[str, Any]:
    """What :func:`add_paraformer_decoding_args`'s flags (all but ``--penalty``) set, by the
    names of :class:`DecodeOptions`' fields and :func:`nar_candidates_refusal`'s arguments
    (``candidates``, ``nar_count``, ``nar_scorer``, ``nar_alternatives``,
    ``nar_ctc_candidate``, ``nar_ar_top``, ``nar_ctc_fusion``)."""
    return {"candidates": args.nar_candidates, "nar_count": args.nar_count, "nar_scorer": args.nar_scorer,
            "nar_alternatives": args.nar_alternatives, "nar_ctc_candidate": args.nar_ctc_candidate,
            "nar_ar_top": args.nar_ar_top, "nar_ctc_fusion": args.nar_ctc_fusion}


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


def given_model_fields(args: argparse.Namespace) -> Tuple[Dict[str, Any], Dict[str, Any], Optional[str]]:
    """Explicitly given flags: model config fields, component option flags (flag ->
    value), and the deprecated ``--modality`` (checked against the encoder flags, with a
    deprecation notice)."""
    fields = {f: getattr(args, f) for f in name_fields() + MODEL_FIELDS + QLORA_FIELDS
              if getattr(args, f, None) is not None}
    for key, _, registry_key in families():
        if key in fields:
            fields[key] = MODEL_REGISTRY[registry_key].canonical(fields[key])
    options = {entry.flag: getattr(args, entry.dest) for entry in component_flags().values()
               if getattr(args, entry.dest, None) is not None}
    if options.get("--elayers") == 0:  # the spelling of "no Conformer" before --encoder none
        del options["--elayers"]
        if fields.get("encoder", "none") != "none":
            raise ValueError(f"--elayers 0 (no encoder layers) contradicts --encoder {fields['encoder']}; "
                             "--encoder none is the model without them")
        fields["encoder"] = "none"
    modality = getattr(args, "modality", None)
    if modality is None:
        return fields, options, None
    vision, audio = LEGACY_MODALITY_ENCODERS[modality]
    print(f"note: --modality is deprecated; --modality {modality} means "
          f"{_flag('vision_encoder') + ' ' + vision if vision else _flag('audio_encoder') + ' ' + audio} "
          f"--decoder transformer", file=sys.stderr)
    has_vision, has_audio = "vision_encoder" in fields, "audio_encoder" in fields
    if (modality == "video" and has_audio) or (modality == "audio" and has_vision):
        other = "--audio-encoder" if modality == "video" else "--vision-encoder"
        raise ValueError(f"--modality {modality} contradicts {other} {fields[other[2:].replace('-', '_')]}")
    return fields, options, modality


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

    * ``stored`` (a checkpoint of ours): that config; an explicit flag that disagrees is an
      error, except the directory of a pretrained model (it may have moved: a note says so).
    * otherwise from the flags; with no encoder flag, the modality of legacy weights
      (``state_keys``) is used, else an error asks for encoder flags.

    A component option flag that no chosen component has is an error.
    """
    given, options, modality = given_model_fields(args)
    # --elayers 0, the old spelling of --encoder none, came with the Conformer's other flags
    # (which then had no effect): those stay accepted, with a note
    legacy_none = getattr(args, "elayers", None) == 0
    if stored is not None:
        config = _from_checkpoint(given, options, modality, odim, stored, source, legacy_none)
    else:
        config = _from_flags(given, options, modality, odim, state_keys, legacy_none)
    extra = [_flag(f) for f in QLORA_FIELDS[1:] if f in given]
    if extra and not config.use_qlora:
        raise ValueError(f"{', '.join(extra)} only apply with --use-qlora")
    return config


def _option_targets(flag: str, names: Dict[str, Optional[str]], describe: str,
                    legacy_none: bool = False) -> List[Tuple[str, str, Option]]:
    """``(conf field, component, option)`` of the chosen components that the flag sets.
    ``legacy_none``: the model has no encoder because of ``--elayers 0``; an encoder's flag
    that applies to nothing then sets nothing (a note says so) instead of being an error."""
    entry = component_flags()[flag]
    conf_of = {registry_key: conf_key for name_key, conf_key, registry_key in families()}
    name_of = {registry_key: name_key for name_key, _, registry_key in families()}
    chosen = []
    for registry, name, option in entry.users:
        key = next(k for k, r in MODEL_REGISTRY.items() if r is registry)
        picked = names.get(name_of[key])
        if picked and registry.canonical(picked) == name:
            chosen.append((conf_of[key], name, option))
    if not chosen and legacy_none and any(registry is MODEL_REGISTRY["encoder"] for registry, _, _ in entry.users):
        print(f"note: {flag} has no effect with --elayers 0 (= --encoder none, no encoder layers)", file=sys.stderr)
    elif not chosen:
        owners = ", ".join(f"{registry.family} {name}" for registry, name, _ in entry.users)
        raise ValueError(f"{flag} does not apply to {describe}: it is an option of {owners}")
    return chosen


def _describe_choice(names: Dict[str, Optional[str]]) -> str:
    """``this model (vision encoder resnet, decoder transformer)``; the encoder is named
    when it is not the default Conformer."""
    picked = [f"{key.replace('_', ' ')} {value}" for key, value in names.items()
              if value and not (key == "encoder" and value == _field_default("encoder"))]
    return "this model (" + ", ".join(picked) + ")"


def _from_flags(given: Dict[str, Any], options: Dict[str, Any], modality: Optional[str], odim: Optional[int],
                state_keys: Optional[Iterable[str]], legacy_none: bool = False) -> ModelConfig:
    if modality is not None and "vision_encoder" not in given and "audio_encoder" not in given:
        given["vision_encoder"], given["audio_encoder"] = LEGACY_MODALITY_ENCODERS[modality]
    if "vision_encoder" not in given and "audio_encoder" not in given:
        legacy = infer_legacy_modality(state_keys) if state_keys is not None else None
        if legacy is None:
            raise ValueError("choose the input: --vision-encoder and/or --audio-encoder (or the legacy --modality)")
        given["vision_encoder"], given["audio_encoder"] = LEGACY_MODALITY_ENCODERS[legacy]
    given.setdefault("vision_encoder", None)
    given.setdefault("audio_encoder", None)
    names = {key: given.get(key, _field_default(key)) for key in name_fields()}
    if names["vision_encoder"] and names["audio_encoder"]:
        names["fusion_type"] = names["fusion_type"] or "concat"
    elif names["fusion_type"]:
        raise ValueError(f"--fusion-type {names['fusion_type']} applies to audio-visual models only: give both "
                         "--vision-encoder and --audio-encoder to fuse two streams")
    if "projection" in given and names["vision_encoder"] and names["audio_encoder"]:
        raise ValueError("--projection applies to single-stream models; an audio-visual model's --fusion-type "
                         "maps the streams to --adim")
    confs: Dict[str, Dict[str, Any]] = {}
    for flag, value in options.items():
        for conf_key, name, option in _option_targets(flag, names, _describe_choice(names), legacy_none):
            confs.setdefault(conf_key, {})[option.name] = option.check(value, f"{flag} ({name})")
    return ModelConfig(odim=odim, **given, **confs)


def _from_checkpoint(given: Dict[str, Any], options: Dict[str, Any], modality: Optional[str], odim: Optional[int],
                     stored: Dict[str, Any], source: str, legacy_none: bool = False) -> ModelConfig:
    config = ModelConfig.from_dict(dict(stored))
    if modality is not None and modality != config.modality:
        raise ValueError(f"--modality {modality} contradicts the {source}, which is a {config.modality} model")
    for name, value in given.items():
        if getattr(config, name) != value:
            raise ValueError(f"{_flag(name)} {value} contradicts the {source}, which was trained with "
                             f"{name}={getattr(config, name)}")
    names = {key: getattr(config, key) for key in name_fields()}
    for flag, value in options.items():
        for conf_key, component, option in _option_targets(flag, names, f"the {source}'s model "
                                                            f"({config.describe()})", legacy_none):
            conf = getattr(config, conf_key)
            value = option.check(value, f"{flag} ({component})")
            if conf[option.name] == value:
                continue
            if not option.replaceable:
                raise ValueError(f"{flag} {value} contradicts the {source}, which was trained with "
                                 f"{flag} {conf[option.name]}")
            # e.g. the pretrained model moved (another machine / directory): use the new place;
            # a --use-qlora checkpoint still checks that the weights are the same
            print(f"note: {flag} {value} replaces the {source}'s {conf[option.name]}", file=sys.stderr)
            conf[option.name] = value
    if odim is not None and config.odim is not None and config.odim != odim:
        raise ValueError(f"the tokenizer has {odim} tokens but the {source} model has odim {config.odim}")
    return config
