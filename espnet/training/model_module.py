"""LightningModule wrapping :class:`E2E`: hybrid-loss training, AdamW + warm-up cosine."""

import math
from typing import Any, Dict, Optional

import torch
from pytorch_lightning import LightningModule

from datamodule.text_transform import TextTransform
from espnet.nets.pytorch_backend.e2e_asr_conformer import E2E, E2EConfig
from espnet.training.checkpoints import load_checkpoint
from espnet.training.scheduler import build_warmup_cosine

INPUT_KEYS = {"video": ("videos", "video_lengths"), "audio": ("audios", "audio_lengths")}
TRANSFER_PREFIXES = {"frontend": ("frontend.",), "encoder": ("frontend.", "proj_encoder.", "encoder.")}


def select_for_transfer(state: Dict[str, torch.Tensor], what: str) -> Dict[str, torch.Tensor]:
    """Subset of a full state dict for ``--transfer-frontend`` (``frontend.*``) or
    ``--transfer-encoder`` (``frontend.*``, ``proj_encoder.*``, ``encoder.*``).

    A standalone frontend checkpoint (keys ``trunk.*``/``frontend3D.*``, as produced by
    word-level pre-training) is accepted for ``frontend``.
    """
    if what == "frontend" and state and all(k.startswith(("trunk.", "frontend3D.")) for k in state):
        return {f"frontend.{k}": v for k, v in state.items()}
    return {k: v for k, v in state.items() if k.startswith(TRANSFER_PREFIXES[what])}


class ModelModule(LightningModule):
    """Args (a plain dict, saved as hyper-parameters):
        model_config: :class:`E2EConfig` as a dict.
        sp_model_path, dict_path: Tokenizer files.
        lr, weight_decay, warmup_epochs, max_epochs: Optimisation.
        pretrained_model_path, transfer_frontend, transfer_encoder: Initialisation.
    """

    def __init__(self, hparams: Dict[str, Any]) -> None:
        super().__init__()
        self.save_hyperparameters(hparams)
        self.config = E2EConfig.from_dict(dict(hparams["model_config"]))
        self.text_transform = TextTransform(hparams["sp_model_path"], hparams["dict_path"])
        if self.text_transform.odim != self.config.odim:
            raise ValueError(
                f"tokenizer {hparams['dict_path']} gives {self.text_transform.odim} tokens but the "
                f"model has odim {self.config.odim}"
            )
        self.model = E2E(self.config)
        path: Optional[str] = hparams.get("pretrained_model_path")
        if path:
            self._initialise_from(path, hparams.get("transfer_frontend"), hparams.get("transfer_encoder"))

    def _initialise_from(self, path: str, frontend_only: bool, encoder_only: bool) -> None:
        state, _, _ = load_checkpoint(path)
        if frontend_only or encoder_only:
            what = "frontend" if frontend_only else "encoder"
            subset = select_for_transfer(state, what)
            if not subset:
                raise ValueError(f"--pretrained-model-path {path}: no {what} weights found")
            missing, unexpected = self.model.load_state_dict(subset, strict=False)
            bad = [k for k in missing if k.startswith(TRANSFER_PREFIXES[what])] + list(unexpected)
            if bad:
                raise ValueError(f"--pretrained-model-path {path}: {what} weights do not match the model: {bad[:5]}")
        else:
            self.model.load_state_dict(state, strict=True)

    def forward_batch(self, batch: Dict[str, torch.Tensor]):
        x_key, len_key = INPUT_KEYS[self.config.modality]
        return self.model(batch[x_key], batch[len_key], batch["targets"])

    def _step(self, batch: Dict[str, torch.Tensor], prefix: str) -> torch.Tensor:
        loss, loss_ctc, loss_att, acc = self.forward_batch(batch)
        bsz = batch["targets"].size(0)
        on_step = prefix == ""
        self.log(f"loss{prefix}", loss, on_step=on_step, on_epoch=True, batch_size=bsz, prog_bar=True)
        self.log(f"loss_ctc{prefix}", loss_ctc, on_step=False, on_epoch=True, batch_size=bsz)
        self.log(f"loss_att{prefix}", loss_att, on_step=False, on_epoch=True, batch_size=bsz)
        self.log(f"decoder_acc{prefix}", acc, on_step=on_step, on_epoch=True, batch_size=bsz)
        if on_step:
            self.log("monitoring_step", float(self.global_step))
        return loss

    def training_step(self, batch, batch_idx):
        return self._step(batch, "")

    def validation_step(self, batch, batch_idx):
        return self._step(batch, "_val")

    def on_train_epoch_start(self) -> None:
        dm = getattr(self.trainer, "datamodule", None)
        sampler = getattr(dm, "train_sampler", None)
        if sampler is not None:
            sampler.set_epoch(self.current_epoch)

    def configure_optimizers(self):
        hp = self.hparams
        optimizer = torch.optim.AdamW(
            self.model.parameters(), lr=hp["lr"], weight_decay=hp["weight_decay"], betas=(0.9, 0.98)
        )
        max_epochs = hp["max_epochs"]
        steps_per_epoch = max(1, math.ceil(self.trainer.estimated_stepping_batches / max_epochs))
        scheduler = build_warmup_cosine(optimizer, hp["warmup_epochs"], max_epochs, steps_per_epoch)
        return [optimizer], [{"scheduler": scheduler, "interval": "step", "frequency": 1}]

    def on_save_checkpoint(self, checkpoint: Dict[str, Any]) -> None:
        checkpoint["model_config"] = self.config.to_dict()
