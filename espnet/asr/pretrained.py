"""The project's public model API: :class:`Recognizer` loads a model of any format the project
reads, with its tokenizer, and turns clips into text.

    from espnet.asr.pretrained import Recognizer

    rec = Recognizer.from_pretrained("exp/avsr/model_avg_10.pth")   # or .ckpt, an export folder,
    print(rec.transcribe("clip.mp4"))                               # a legacy Auto-AVSR .pth + flags
    rec.save_pretrained("exported/")                                # a folder from_pretrained reads

Formats (:meth:`Recognizer.from_pretrained`): a Lightning checkpoint of ``train.py``
(``.ckpt``), an averaged model ``model_avg_*.pth`` with its ``.json`` sidecar, a folder written by
:meth:`Recognizer.save_pretrained` (or ``python -m espnet.training.export --hf-dir``), an original
Auto-AVSR ``.pth`` (give its tokenizer and, where its sizes are not the defaults, the size
flags), or no file at all: a model given by flags whose every part is pretrained (e.g. the
Whisper encoder and decoder, zero-shot).
"""

import argparse
import contextlib
import os
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence, Union

import torch

from datamodule.av_dataset import MODALITY_STREAMS
from datamodule.clip import load_clip
from datamodule.label_list import STREAMS
from datamodule.text_transform import TextTransform
from datamodule.transforms import AudioTransform, VideoTransform
from espnet.asr.recognizer import recognize_batch
from espnet.nets.pytorch_backend.decoder.base_decoder import DecodeOptions
from espnet.nets.pytorch_backend.e2e_asr_conformer import E2E
from espnet.nets.pytorch_backend.model_config import ModelConfig

Clip = Union[str, Dict[str, torch.Tensor]]


def model_flag_parser() -> argparse.ArgumentParser:
    """A parser of the model flags ``train.py`` and ``eval.py`` take (components, sizes,
    component options, tokenizer, generation limit)."""
    from espnet.training.cli_args import add_generate_args, add_model_args, add_tokenizer_args

    parser = argparse.ArgumentParser(add_help=False, prog="model flags")
    add_model_args(parser)
    add_tokenizer_args(parser)
    add_generate_args(parser)
    return parser


def parse_model_flags(flags: Sequence[str]) -> argparse.Namespace:
    """``["--audio-encoder", "whisper", ...]`` -> a namespace; an unknown or malformed flag is a
    ``ValueError`` naming it (not argparse's exit)."""
    parser = model_flag_parser()
    args, unknown = parser.parse_known_args(list(flags))
    if unknown:
        raise ValueError(f"unknown model flag(s): {' '.join(unknown)}")
    return args


@dataclass
class ResolvedModel:
    """What a model source holds, read but not built: its config, weights (``None`` for a model
    from flags), tokenizer and name. Enough to check inputs before the model is built."""

    config: ModelConfig
    state: Optional[Dict[str, torch.Tensor]]
    tokenizer: Optional[TextTransform]
    source: str
    config_stored: bool = False  # the file recorded its config (a checkpoint of this project)


def resolve_pretrained(path: Optional[str] = None, flags: Union[Sequence[str], argparse.Namespace] = (),
                       precision: Optional[str] = None) -> ResolvedModel:
    """Read ``path`` (see :meth:`Recognizer.from_pretrained` for the arguments) and work out the
    model config and tokenizer, without building the model."""
    from espnet.training.checkpoints import load_checkpoint
    from espnet.training.cli_args import load_tokenizer, resolve_model_config
    from espnet.training.tokenizer_files import check_same_tokenizer

    args = flags if isinstance(flags, argparse.Namespace) else parse_model_flags(flags)
    state, stored_config, meta = None, None, {}
    if path is not None:
        state, stored_config, meta = load_checkpoint(path)
    tokenizer = load_tokenizer(getattr(args, "sp_model_path", None) or meta.get("sp_model_path"),
                               getattr(args, "dict_path", None) or meta.get("dict_path"))
    check_same_tokenizer(tokenizer, {k: getattr(args, k, None) for k in ("sp_model_path", "dict_path")}, meta, path)
    odim = tokenizer.odim if tokenizer is not None else None
    config = resolve_model_config(args, odim, stored_config, source=path or "model flags",
                                  state_keys=state.keys() if state is not None else None)
    if precision is not None:
        if precision not in ("32", "bf16-mixed"):
            raise ValueError(f"precision must be 32 or bf16-mixed, got {precision!r}")
        config.pretrained_dtype = "bfloat16" if precision == "bf16-mixed" else "float32"
    if state is None:
        config.ctc_weight = 0.0  # no checkpoint: the CTC head is untrained, decoding leaves it out
    return ResolvedModel(config, state, tokenizer, path or "model flags", config_stored=stored_config is not None)


def decoding_device(accelerator: str) -> str:
    """``--accelerator`` of ``eval.py`` / ``transcribe.py`` (``auto``, ``cpu``, ``gpu``, ``cuda``):
    ``"cuda"`` or ``"cpu"``; asking for a GPU where there is none is an error."""
    if accelerator in ("gpu", "cuda") and not torch.cuda.is_available():
        raise ValueError(f"--accelerator {accelerator} requested but no CUDA device is available")
    cuda = accelerator in ("gpu", "cuda") or (accelerator == "auto" and torch.cuda.is_available())
    return "cuda" if cuda else "cpu"


def resolve_for_decoding(path: Optional[str], args: argparse.Namespace, device: str,
                         log: Any = print) -> ResolvedModel:
    """:func:`resolve_pretrained` with ``args.precision`` (``checkpoint``: as the model was
    trained; ``auto``, ``32``, ``bf16-mixed``: see :mod:`espnet.training.precision`) resolved for
    ``device``; the choice and its reason are printed (``precision: 32 (--precision checkpoint)``)."""
    from espnet.training.precision import resolve_precision

    if args.precision == "checkpoint":
        precision, reason = None, "--precision checkpoint"
    else:
        precision, reason = resolve_precision(args.precision, device)
    resolved = resolve_pretrained(path, args, precision=precision)
    log(f"precision: {'bf16-mixed' if resolved.config.pretrained_dtype == 'bfloat16' else '32'} ({reason})")
    return resolved


def build_model(resolved: ResolvedModel) -> E2E:
    """The model (eval mode) that :func:`resolve_pretrained` described, its weights loaded (an
    error that says what differs when they do not fit); a model without weights must be
    pretrained in every part."""
    from espnet.training.checkpoints import load_state_checked
    from espnet.utils.skip_weight_init import skip_weight_init

    # a checkpoint overwrites every weight (strict load; a --use-qlora model loads a subset)
    strict = resolved.state is not None and not resolved.config.use_qlora
    with skip_weight_init() if strict else contextlib.nullcontext():
        model = E2E(resolved.config)
    if resolved.state is None:
        untrained = model.untrained_parts()
        if untrained:
            raise ValueError("without --pretrained-model-path every part of the model must be pretrained, but "
                             f"these are not: {', '.join(untrained)}; train the model first (train.py) and "
                             "pass its checkpoint")
    else:
        load_state_checked(model, resolved.state, resolved.source)
    return model.eval()


class Recognizer:
    """A recogniser ready to decode: the model (eval mode, on ``device``) and its tokenizer.

    Args:
        model: The model.
        tokenizer: Its SentencePiece tokenizer, or ``None`` for a decoder with its own.
        source: Where it came from (named in messages).
        device: Where it runs (``"cpu"``, ``"cuda"``).
    """

    def __init__(self, model: E2E, tokenizer: Optional[TextTransform], source: str = "model",
                 device: str = "cpu") -> None:
        model.decoder.check_tokenizer(tokenizer)
        self.model = model.to(device).eval()
        self.tokenizer = tokenizer
        self.source = source
        self.device = device
        self._video_transform = VideoTransform("test")
        self._audio_transform = AudioTransform("test", utterance_norm=model.audio_utterance_norm)

    # ---- loading and saving -------------------------------------------------------------
    @classmethod
    def from_pretrained(cls, path: Optional[str] = None, flags: Union[Sequence[str], argparse.Namespace] = (),
                        device: str = "cpu", precision: Optional[str] = None) -> "Recognizer":
        """Load a model and its tokenizer.

        Args:
            path: A checkpoint or export folder (see the module docstring), or ``None`` for a
                model given by ``flags`` whose every part is pretrained.
            flags: Model flags as ``train.py``/``eval.py`` take them (a list of strings, or a
                namespace parsed by their parsers): required for a model without a file and for
                a legacy Auto-AVSR checkpoint (tokenizer, sizes), optional otherwise (a flag
                that contradicts the checkpoint is an error; ``--sp-model-path`` /
                ``--dict-path`` replace the recorded tokenizer).
            device: Where the model runs.
            precision: ``"32"`` or ``"bf16-mixed"`` (pretrained weights in bfloat16); default:
                what the checkpoint was trained with.
        """
        return cls.from_resolved(resolve_pretrained(path, flags, precision), device=device)

    @classmethod
    def from_resolved(cls, resolved: "ResolvedModel", device: str = "cpu") -> "Recognizer":
        """Build the model that :func:`resolve_pretrained` described (the slow part: weights)."""
        return cls(build_model(resolved), resolved.tokenizer, source=resolved.source, device=device)

    def save_pretrained(self, out_dir: str) -> str:
        """Write ``out_dir`` (a new or empty folder): ``config.json``, ``model.safetensors`` and
        the tokenizer files, which :meth:`from_pretrained` reads back; returns ``out_dir``."""
        from espnet.training.export import write_export_folder

        meta = {"sp_model_path": self.tokenizer.sp_model_path if self.tokenizer is not None else None,
                "dict_path": self.tokenizer.dict_path if self.tokenizer is not None else None}
        # a --use-qlora model stores its adapters and new modules (its pretrained weights load from their folders)
        weights = self.model.checkpoint_state_dict() if self.model.qlora_applied else self.model.state_dict()
        state = {k: v.detach().cpu() for k, v in weights.items()}
        return write_export_folder(state, self.model.config, meta, out_dir, exported_from=self.source)

    # ---- inputs ---------------------------------------------------------------------------
    @property
    def streams(self) -> tuple:
        """The streams the model reads: ``("video",)``, ``("audio",)`` or both."""
        return MODALITY_STREAMS[self.model.modality]

    def load_clip(self, path: str, audio_path: Optional[str] = None) -> Dict[str, torch.Tensor]:
        """Model inputs of one prepared clip, as ``eval.py`` reads a test utterance.

        Args:
            path: A 25 fps mp4 of 96x96 mouth crops (video and audio-visual models), or for an
                audio-only model any audio file or a clip with a ``.wav`` beside it.
            audio_path: Its 16 kHz audio; default: the ``.wav`` beside ``path``, else ``path``.

        Returns:
            ``{"video": (T, 1, 88, 88) float}`` and/or ``{"audio": (S, 1) float}`` (16 kHz).
        """
        if not os.path.isfile(path):
            raise FileNotFoundError(f"{path}: clip not found")
        if "audio" in self.streams and audio_path is None:
            wav = os.path.splitext(path)[0] + ".wav"
            audio_path = wav if os.path.isfile(wav) else path
        clip = load_clip(path, self.streams, audio_path=audio_path)
        return self.prepare_inputs(video=clip.get("video"), audio=clip.get("audio"))

    def prepare_inputs(self, video: Optional[torch.Tensor] = None,
                       audio: Optional[torch.Tensor] = None) -> Dict[str, torch.Tensor]:
        """Model inputs of streams already decoded at the model's rates (what :meth:`load_clip`
        returns for a file): ``video`` uint8 ``(T, 3, H, W)`` at 25 fps (mouth crops) and/or
        ``audio`` float ``(S,)`` or ``(S, 1)`` at 16 kHz. An audio-visual model decodes an
        input without one of its streams with that stream's learned stand-in."""
        out = {}
        if video is not None:
            out["video"] = self._video_transform(video)
        if audio is not None:
            out["audio"] = self._audio_transform(audio.reshape(-1, 1))
        return out

    # ---- decoding -------------------------------------------------------------------------
    def decode_options(self, **overrides: Any) -> DecodeOptions:
        """Decoding options: ``beam_size``, ``ctc_weight`` (default: the model's training
        weight), ``max_new_tokens``, ``penalty``, ``candidates``, ``nar_count``, ``nar_scorer``,
        ``nar_alternatives``, ``nar_ctc_candidate``, ``nar_ar_top`` and ``nar_ctc_fusion`` (a Paraformer's, see
        :class:`DecodeOptions`)."""
        overrides.setdefault("ctc_weight", self.model.config.ctc_weight)
        options = DecodeOptions(**overrides)
        self.model.decoder.check_options(options)
        return options

    @torch.no_grad()
    def recognize_batch(self, clips: Sequence[Clip], **options: Any) -> List[Any]:
        """Best hypotheses (token ids and scores) of ``clips``: paths (see :meth:`load_clip`) or
        inputs already loaded; decoded together, each as it would be alone."""
        items = [self.load_clip(c) if isinstance(c, str) else c for c in clips]
        items = [{k: item[k].to(self.device) for k in STREAMS if k in item} for item in items]
        bf16 = self.model.config.pretrained_dtype == "bfloat16"
        device_type = "cuda" if str(self.device).startswith("cuda") else "cpu"
        with torch.autocast(device_type=device_type, dtype=torch.bfloat16) if bf16 else contextlib.nullcontext():
            return recognize_batch(self.model, items, self.decode_options(**options))

    @torch.no_grad()
    def recognize_guarded(self, clips: Sequence[Clip], guard: Any = None, fallback: Any = None,
                          previous_texts: Optional[Sequence[str]] = None, **options: Any) -> List[Any]:
        """Best hypotheses of ``clips`` with their texts, checked for repetition by ``guard``
        (:class:`espnet.asr.repetition.GuardOptions`; default: openai-whisper's thresholds) and,
        with ``fallback`` (:class:`espnet.asr.fallback.FallbackOptions`), failed ones decoded
        again by sampling; ``previous_texts``: per clip, the text to condition on (Whisper).
        Returns :class:`espnet.asr.fallback.GuardedHypothesis` objects."""
        from espnet.asr.fallback import recognize_guarded
        from espnet.asr.repetition import GuardOptions

        items = [self.load_clip(c) if isinstance(c, str) else c for c in clips]
        items = [{k: item[k].to(self.device) for k in STREAMS if k in item} for item in items]
        bf16 = self.model.config.pretrained_dtype == "bfloat16"
        device_type = "cuda" if str(self.device).startswith("cuda") else "cpu"
        with torch.autocast(device_type=device_type, dtype=torch.bfloat16) if bf16 else contextlib.nullcontext():
            return recognize_guarded(self.model, items, self.decode_options(**options), self.tokenizer,
                                     guard if guard is not None else GuardOptions(), fallback, previous_texts)

    def transcribe_batch(self, clips: Sequence[Clip], **options: Any) -> List[str]:
        """Texts of ``clips`` (see :meth:`recognize_batch`); options as :meth:`decode_options`."""
        return [self.model.decoder.ids_to_text(hyp.token_ids, self.tokenizer)
                for hyp in self.recognize_batch(clips, **options)]

    def transcribe(self, clip: Clip, **options: Any) -> str:
        """The text of one clip (a path or loaded inputs)."""
        return self.transcribe_batch([clip], **options)[0]
