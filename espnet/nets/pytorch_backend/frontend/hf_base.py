"""Shared machinery of the frontends that wrap a pretrained Hugging Face model
(vision and audio): lazy import, offline-aware loading with a clear error, freezing.

Loading: ``name`` is a Hugging Face id or a local directory written by
``save_pretrained`` / ``huggingface-cli download --local-dir``. ``from_pretrained`` is
called with ``local_files_only=True`` when ``HF_HUB_OFFLINE`` (or
``TRANSFORMERS_OFFLINE``) is set, so no network is tried. Remote code is never run.

Freezing (the default): every parameter of the wrapped model has ``requires_grad=False``,
the wrapped model stays in eval mode (dropout off) even when the parent calls
``.train()``, and its forward runs under ``torch.no_grad()`` so no activations are kept.
Unfrozen: trainable, normal train/eval switching.
"""

import contextlib
import json
import os
import warnings
from typing import Any, Dict, Iterable, Optional, Tuple

import torch

from espnet.nets.pytorch_backend.component_options import Option
from espnet.nets.pytorch_backend.frontend.base_frontend import VIDEO_MEAN, VIDEO_STD, BaseFrontend
from espnet.nets.pytorch_backend.nets_utils import make_non_pad_mask

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

_TRUE = {"1", "true", "yes", "on"}


def offline() -> bool:
    """``HF_HUB_OFFLINE`` / ``TRANSFORMERS_OFFLINE`` set: load from local files only."""
    return any(os.environ.get(k, "").strip().lower() in _TRUE for k in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))


def import_transformers():
    try:
        import transformers
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError(
            "pretrained frontends need the 'transformers' package: pip install transformers"
        ) from err
    return transformers


class PretrainedModelNotFound(FileNotFoundError):
    """A pretrained model could not be loaded from the given id / directory (a
    ``FileNotFoundError``, so the CLIs report it as ``error: ...`` without a traceback)."""


def _how_to_provide(name: str, flag: str) -> str:
    return (
        f"Download it once where there is network access, e.g. "
        f"`huggingface-cli download {name} --local-dir DIR` (or load it with from_pretrained and "
        f"`save_pretrained(DIR)`), copy DIR here and pass `{flag} DIR`."
    )


def model_not_found(name: str, flag: str, what: str, reason: str) -> PretrainedModelNotFound:
    return PretrainedModelNotFound(f"cannot load {what} '{name}' (given by {flag}): {reason}. " + _how_to_provide(name, flag))


BF16_NAMES = ("bfloat16", "bf16")


def pretrained_dtype(config) -> torch.dtype:
    """Weight dtype of the pretrained components: ``torch.bfloat16`` when the config asks
    for it (``--precision bf16-mixed`` / ``bf16-true``), else ``torch.float32``, whatever
    dtype the checkpoint was stored in."""
    return torch.bfloat16 if str(getattr(config, "pretrained_dtype", "float32")) in BF16_NAMES else torch.float32


def load_pretrained(model_cls_name: str, name: str, flag: str, what: str, model_types: Iterable[str],
                    dtype: torch.dtype = torch.float32, **kwargs):
    """``transformers.<model_cls_name>.from_pretrained(name)`` with a clear error.

    Args:
        model_types: accepted ``config.model_type`` values (guards against, e.g., a
            Whisper directory given as a ViT model).
        dtype: weight dtype after loading. Checkpoints are often stored in float16 or
            bfloat16 (Whisper, LLaMA-2) and ``from_pretrained`` would keep that dtype;
            the weights are cast to ``dtype`` (float32 for 32-bit runs) instead.
        kwargs: passed to ``from_pretrained``.
    """
    transformers = import_transformers()
    local_only = offline()
    looks_local = name.startswith((".", "/", "~")) or name.count("/") > 1 or "\\" in name
    if looks_local and not os.path.isdir(os.path.expanduser(name)):
        raise model_not_found(name, flag, what, "no such directory")
    if os.path.isdir(os.path.expanduser(name)):
        name = os.path.expanduser(name)
        if not os.path.isfile(os.path.join(name, "config.json")):
            raise model_not_found(name, flag, what, "the directory has no config.json (not a saved model)")
    try:
        config = transformers.AutoConfig.from_pretrained(name, local_files_only=local_only)
    except (OSError, ValueError) as err:
        where = "not a local directory and not in the Hugging Face cache" + (
            " (HF_HUB_OFFLINE is set, so nothing is downloaded)" if local_only else " and it could not be downloaded"
        )
        detail = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise model_not_found(name, flag, what, f"{where} [{detail}]") from None
    model_types = tuple(model_types)
    if config.model_type not in model_types:
        raise ValueError(
            f"{flag} '{name}' is a '{config.model_type}' model; {what} needs one of: {', '.join(model_types)}"
        )
    model_cls = getattr(transformers, model_cls_name)
    # Unused checkpoint weights are expected (a CLIP text tower, a ViT pooler, a Whisper
    # decoder): keep transformers' load report quiet and warn only about missing weights.
    verbosity = transformers.utils.logging.get_verbosity()
    transformers.utils.logging.set_verbosity_error()
    try:
        model, info = model_cls.from_pretrained(
            name, local_files_only=local_only, output_loading_info=True, dtype=dtype, **kwargs
        )
    except (OSError, ValueError) as err:
        detail = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise model_not_found(name, flag, what, f"its weights could not be loaded [{detail}]") from None
    finally:
        transformers.utils.logging.set_verbosity(verbosity)
    missing = sorted(info.get("missing_keys", []))
    if missing:
        warnings.warn(
            f"{what}: {len(missing)} weights are not in '{name}' and were randomly initialised: "
            f"{', '.join(missing[:5])}{', ...' if len(missing) > 5 else ''}"
        )
    return model


def load_preprocessor_config(name: str) -> dict:
    """``preprocessor_config.json`` of ``name`` (local directory or cached/downloadable
    hub id); ``{}`` when there is none."""
    path = os.path.join(os.path.expanduser(name), "preprocessor_config.json")
    if not os.path.isdir(os.path.expanduser(name)):
        try:
            from huggingface_hub import hf_hub_download

            path = hf_hub_download(name, "preprocessor_config.json", local_files_only=offline())
        except (OSError, ValueError):  # not on the hub / not cached: callers use documented defaults
            return {}
    if not os.path.isfile(path):
        return {}
    with open(path) as handle:
        return json.load(handle)


def image_mean_std(name: str, default_mean, default_std) -> Tuple[Tuple[float, ...], Tuple[float, ...]]:
    """Per-channel mean/std of the model's image processor, defaults when absent."""
    pre = load_preprocessor_config(name)

    def three(v, default):
        if v is None:
            return tuple(default)
        v = [float(x) for x in (v if isinstance(v, (list, tuple)) else [v])]
        return tuple(v * 3) if len(v) == 1 else tuple(v)

    return three(pre.get("image_mean"), default_mean), three(pre.get("image_std"), default_std)


class HFFrontend(BaseFrontend):
    """Base of the pretrained frontends: holds ``self.model`` and handles freezing.

    Options (every pretrained frontend): ``model_name`` (``--vision-model-name`` /
    ``--audio-model-name``; ``None`` = the class's ``default_model_name``) and ``unfreeze``
    (``--unfreeze-vision`` / ``--unfreeze-audio``). Subclasses add theirs; ``from_config``
    passes every option to the constructor, with the weight dtype of the config.
    """

    default_model_name: str = ""
    options = (
        Option("model_name", None, "Hugging Face id or local directory of the pretrained {family} model "
               "(default: the encoder's own default).", type=str, flag="--{family}-model-name", replaceable=True),
        Option("unfreeze", False, "Train the pretrained {family} frontend (frozen by default).",
               flag="--unfreeze-{family}"),
    )

    def __init__(self, model: torch.nn.Module, freeze: bool = True) -> None:
        super().__init__()
        self.model = model
        self.frozen = bool(freeze)
        if self.frozen:
            self.model.requires_grad_(False)
            self.model.eval()

    def train(self, mode: bool = True) -> "HFFrontend":
        super().train(mode)
        if self.frozen:
            self.model.eval()
        return self

    # --use-qlora hooks: names of linear layers whose weights the wrapped model reads
    # directly (they cannot be swapped for 4-bit layers), and the LoRA targets to use
    # instead of the attention projections (None = the manager's default).
    qlora_keep_full_precision: Tuple[str, ...] = ()
    qlora_default_targets: Optional[Tuple[str, ...]] = None

    def pretrained_model(self) -> torch.nn.Module:
        """The wrapped pretrained network: what ``--use-qlora`` quantises and adapts."""
        return self.model

    def on_qlora_applied(self) -> None:
        """LoRA adapters were added inside ``self.model``: run it with gradients (and
        switch train/eval normally) so that they learn; its own weights stay frozen."""
        self.frozen = False

    def model_context(self):
        """``torch.no_grad()`` for a frozen model, a no-op otherwise."""
        return torch.no_grad() if self.frozen else contextlib.nullcontext()

    @classmethod
    def from_config(cls, config, options: Dict[str, Any]) -> "HFFrontend":
        options = dict(options)
        name = options.pop("model_name") or cls.default_model_name
        freeze = not options.pop("unfreeze")
        return cls(name, freeze=freeze, dtype=pretrained_dtype(config), **options)


def mono_waveform(x: torch.Tensor, what: str) -> torch.Tensor:
    """``(B, S, 1)`` or ``(B, S)`` 16 kHz audio -> ``(B, S)``; anything else is an error naming ``what``."""
    if x.dim() == 3 and x.size(-1) == 1:
        return x.squeeze(-1)
    if x.dim() == 2:
        return x
    raise ValueError(f"{what} expects (B, S, 1) audio, got {tuple(x.shape)}")


def valid_mask(lengths: torch.Tensor, max_len: int) -> torch.Tensor:
    """``(B, max_len)`` bool, True on valid steps."""
    return make_non_pad_mask(lengths.to(torch.long), max_len)


def video_to_pixels(frames: torch.Tensor, size: Tuple[int, int], mean, std, dtype=torch.float32) -> torch.Tensor:
    """``(N, 1, H, W)`` dataset-normalised grayscale -> ``(N, 3, *size)`` normalised
    with the model's own mean/std: undo the dataset normalisation (back to [0, 1]
    intensities), bilinear resize, repeat to 3 channels, ``(x - mean) / std``."""
    x = frames.float() * VIDEO_STD + VIDEO_MEAN
    if tuple(x.shape[-2:]) != tuple(size):
        x = torch.nn.functional.interpolate(x, size=tuple(size), mode="bilinear", align_corners=False, antialias=False)
    x = x.expand(-1, 3, -1, -1).to(dtype)
    m = torch.tensor(mean, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    s = torch.tensor(std, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    return (x - m) / s


def pair(v) -> Tuple[int, int]:
    return (int(v[0]), int(v[1])) if isinstance(v, (list, tuple)) else (int(v), int(v))
