"""The hyper-parameters of a training run, typed: what ``train.py``'s flags decide for the
Lightning module, stored in every checkpoint as a plain dict (``to_dict``; the keys are those
checkpoints have always held, so older checkpoints and tools keep reading them)."""

import argparse
from dataclasses import asdict, dataclass
from typing import Any, Dict, List, Optional


@dataclass
class TrainingHparams:
    """See :class:`espnet.training.model_module.ModelModule` for what each field does."""

    model_config: Dict[str, Any]
    sp_model_path: Optional[str]  # relative to the run directory (train.py copies the files there)
    dict_path: Optional[str]
    tokenizer_fingerprint: Optional[str]
    lr: float
    weight_decay: float
    warmup_epochs: int
    max_epochs: int
    pretrained_model_path: Optional[str]
    transfer_frontend: bool
    transfer_encoder: bool
    transfer_backend: bool
    init_audio_from: Optional[str]
    init_video_from: Optional[str]
    init_encoder_from: str
    modality_dropout: float
    root_dir: str
    train_file: str
    val_file: Optional[str]
    max_frames: int
    seed: int
    skip_nonfinite: bool
    accumulate_grad_batches: int
    val_wer_every: int
    max_new_tokens: int
    freeze_param: Optional[List[str]] = None  # absent from checkpoints before --freeze-param
    transfer_ar_scorer: bool = False  # absent from checkpoints before --transfer-ar-scorer

    @classmethod
    def from_args(cls, args: argparse.Namespace, model_config: Dict[str, Any], tokenizer_files: Dict[str, Any],
                  fingerprint: Optional[str]) -> "TrainingHparams":
        """From ``train.py``'s parsed flags, the resolved model config (as a dict), the tokenizer
        file names of the run directory and the tokenizer's fingerprint."""
        taken = {name: getattr(args, name) for name in cls.__dataclass_fields__
                 if name not in ("model_config", "sp_model_path", "dict_path", "tokenizer_fingerprint")}
        return cls(model_config=model_config, sp_model_path=tokenizer_files.get("sp_model_path"),
                   dict_path=tokenizer_files.get("dict_path"), tokenizer_fingerprint=fingerprint, **taken)

    def to_dict(self) -> Dict[str, Any]:
        return asdict(self)
