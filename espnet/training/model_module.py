"""LightningModule wrapping :class:`E2E`: hybrid-loss training, AdamW + warm-up cosine."""

import logging
from typing import Any, Dict, List, Optional

import torch
from pytorch_lightning import LightningModule

from datamodule.seeding import derive_seed
from datamodule.text_transform import TextTransform
from espnet.nets.pytorch_backend.e2e_asr_conformer import E2E
from espnet.nets.pytorch_backend.model_config import ModelConfig
from espnet.training.checkpoints import load_checkpoint, load_state_checked
from espnet.training.freezing import freeze, keep_frozen_in_eval
from espnet.training.cli_args import infer_legacy_modality
from espnet.training.rng_state import capture_rng_states, restore_rng_states
from espnet.training.scheduler import adamw_warmup_cosine
from espnet.training.val_decoding import batch_inputs, decode_batch

log = logging.getLogger(__name__)

TRANSFER_PREFIXES = {"frontend": ("frontend.",), "encoder": ("frontend.", "proj_encoder.", "encoder."),
                     "backend": ("proj_encoder.", "encoder.", "decoder.", "ctc.")}
# the same parts of an audio-visual model (two frontends; the fusion layer in place of proj_encoder)
AV_TRANSFER_PREFIXES = {"frontend": ("vision_frontend.", "audio_frontend."),
                        "encoder": ("vision_frontend.", "audio_frontend.", "fusion.", "encoder."),
                        "backend": ("fusion.", "encoder.", "decoder.", "ctc.")}
AV_PARTS = (*AV_TRANSFER_PREFIXES["frontend"], "fusion.")  # keys only an audio-visual model has


def select_for_transfer(state: Dict[str, torch.Tensor], what: str, modality: str) -> Dict[str, torch.Tensor]:
    """Subset of a single-modality state dict for ``--transfer-frontend`` (``frontend.*``),
    ``--transfer-encoder`` (``frontend.*``, ``proj_encoder.*``, ``encoder.*``) or
    ``--transfer-backend`` (``proj_encoder.*``, ``encoder.*``, ``decoder.*``, ``ctc.*``: everything
    after the frontend, so it may come from a model of the other modality, e.g. a video-only
    model whose encoder and decoder start from a trained audio-only model).

    A standalone frontend checkpoint (keys ``trunk.*``/``frontend3D.*``, as produced by
    word-level pre-training) is accepted. For an audio-visual target the frontend goes to
    ``vision_frontend`` or ``audio_frontend`` (by the kind of frontend the checkpoint has)
    and ``proj_encoder`` is dropped (the fusion layer replaces it).

    An audio-visual checkpoint gives an audio-visual model its same parts (``frontend``: both
    frontends; ``encoder``: both frontends, the fusion layer and the encoder; ``backend``:
    the fusion layer, encoder, decoder and CTC head), and a single-modality model the
    ``encoder``, ``decoder`` and ``ctc`` of ``backend``; its frontends fit no single-modality
    model (a ``ValueError``).
    """
    if any(k.startswith(AV_PARTS) for k in state):
        if modality == "audiovisual":
            return {k: v for k, v in state.items() if k.startswith(AV_TRANSFER_PREFIXES[what])}
        if what != "backend":
            raise ValueError(f"--transfer-{what} from an audio-visual checkpoint needs an audio-visual model "
                             f"(this is a {modality} model); --transfer-backend takes its encoder, decoder and CTC")
        return {k: v for k, v in state.items() if k.startswith(("encoder.", "decoder.", "ctc."))}
    if state and all(k.startswith(("trunk.", "frontend3D.")) for k in state):
        state = {f"frontend.{k}": v for k, v in state.items()}
    subset = {k: v for k, v in state.items() if k.startswith(TRANSFER_PREFIXES[what])}
    if modality != "audiovisual":
        return subset
    if what == "backend":  # the fusion layer of an audio-visual model replaces proj_encoder
        return {k: v for k, v in subset.items() if not k.startswith("proj_encoder.")}
    source = infer_legacy_modality(subset)
    if source is None:
        raise ValueError("cannot tell whether the checkpoint's frontend is a video or an audio frontend")
    target = "vision_frontend." if source == "video" else "audio_frontend."
    out = {}
    for key, value in subset.items():
        if key.startswith("frontend."):
            out[target + key[len("frontend."):]] = value
        elif key.startswith("encoder."):
            out[key] = value
    return out


def select_ar_scorer(state: Dict[str, torch.Tensor], model: torch.nn.Module, path: str) -> Dict[str, torch.Tensor]:
    """``--transfer-ar-scorer``: the ``decoder.*`` weights of a Transformer-decoder checkpoint's
    ``state`` renamed ``decoder.ar_decoder.*``, the auxiliary autoregressive decoder of
    ``model`` (a Paraformer with ``--paraformer-ar-dlayers``), every one of its weights found
    with its shape.

    Raises:
        ValueError: ``model`` has no auxiliary decoder, or the checkpoint's decoder (``path``)
            does not have its weights (another decoder, or another size), naming what differs.
    """
    expected = {k: v.shape for k, v in model.state_dict().items() if k.startswith("decoder.ar_decoder.")}
    if not expected:
        raise ValueError("--transfer-ar-scorer fills a Paraformer's auxiliary autoregressive decoder: this model has "
                         "none (--decoder paraformer --paraformer-ar-dlayers N)")
    taken = {"decoder.ar_decoder." + k[len("decoder."):]: v for k, v in state.items() if k.startswith("decoder.")}
    missing = [k for k in expected if k not in taken]
    wrong = [f"{k} {tuple(taken[k].shape)} (expected {tuple(shape)})" for k, shape in expected.items()
             if k in taken and taken[k].shape != shape]
    extra = [k for k in taken if k not in expected]
    if missing or wrong or extra:
        detail = "; ".join(part for part in (
            f"missing {', '.join(missing[:3])}" if missing else "", f"shapes {', '.join(wrong[:3])}" if wrong else "",
            f"not in the auxiliary decoder {', '.join(extra[:3])}" if extra else "") if part)
        raise ValueError(f"--transfer-ar-scorer: the decoder of {path} does not fit this Paraformer's auxiliary "
                         f"decoder (a --decoder transformer model with --dlayers equal to --paraformer-ar-dlayers and "
                         f"the same --adim/--dunits): {detail}")
    return taken


def describe_nonfinite(epoch: int, step: int, reports: List[tuple]) -> str:
    """Where a step went non-finite, from each rank's ``(found, utterance paths, batches)``:
    the ranks with a non-finite loss (the gradient all-reduce spreads a NaN to every rank's
    gradients, so a loss names the culprit), else every rank that found something."""
    culprits = [(r, rep) for r, rep in enumerate(reports) if any(f.startswith("loss") for f in rep[0])]
    culprits = culprits or [(r, rep) for r, rep in enumerate(reports) if rep[0]]
    parts = []
    for rank, (found, paths, n_batches) in culprits:
        batches = f"{n_batches} batches" if n_batches > 1 else "the batch"
        on_rank = f" on rank {rank}" if len(reports) > 1 else ""
        parts.append(f"non-finite {', '.join(found)}{on_rank} on {batches} of {len(paths)} utterance(s) "
                     f"{', '.join(paths)}")
    return f"epoch {epoch}, step {step}: " + "; ".join(parts)


class NonFiniteError(RuntimeError):
    """A training step produced a NaN/inf loss or gradient norm (exit status 1)."""

    exit_code = 1


class ModelModule(LightningModule):
    """Args (a plain dict, saved as hyper-parameters):
        model_config: :class:`ModelConfig` as a dict.
        sp_model_path, dict_path: SentencePiece tokenizer files (``None`` for a decoder
            with its own tokenizer), as checkpoints record them (``train.py``: relative to
            the run directory, where it copies them).
        lr, weight_decay, warmup_epochs, max_epochs: Optimisation.
        pretrained_model_path, transfer_frontend, transfer_encoder, transfer_backend: Initialisation.
        transfer_ar_scorer: Also take that checkpoint's decoder (a Transformer decoder) into the
            Paraformer's auxiliary autoregressive decoder (:func:`select_ar_scorer`).
        init_audio_from, init_video_from, init_encoder_from: Initialisation of an
            audio-visual model from an audio-only and a video-only checkpoint
            (:mod:`espnet.training.av_init`).
        freeze_param: ``--freeze-param`` prefixes (:func:`espnet.training.freezing.freeze`).
        seed: Base seed; the dropout of each training step is seeded from (seed, rank,
            epoch, batch), so an interrupted and resumed run draws the same numbers.
        skip_nonfinite: Skip (no update) an optimiser step whose loss (of any of its
            accumulated batches) or gradient norm is not finite instead of stopping with
            :class:`NonFiniteError`; :attr:`skipped_batches` counts them.
        val_wer_every: Every this many epochs, also decode the validation batches (beam 1,
            see :func:`decode_batch`) and log their corpus WER as ``wer_val``; 0 = never.
        max_new_tokens: Most tokens of that decoding for decoders with their own tokenizer.
    text_transform: The tokenizer, when already loaded (else loaded from ``sp_model_path`` /
        ``dict_path``).

    Checkpoints also carry the RNG states of torch, NumPy and Python (``rng_states``).
    """

    def __init__(self, hparams: Dict[str, Any], text_transform: Optional[TextTransform] = None) -> None:
        super().__init__()
        self.save_hyperparameters(hparams)
        self.config = ModelConfig.from_dict(dict(hparams["model_config"]))
        self.text_transform = text_transform
        if self.text_transform is None and (hparams.get("sp_model_path") or hparams.get("dict_path")):
            self.text_transform = TextTransform(hparams["sp_model_path"], hparams["dict_path"])
        if self.text_transform is not None:
            if self.text_transform.odim != self.config.odim:
                raise ValueError(
                    f"tokenizer {hparams['dict_path']} gives {self.text_transform.odim} tokens but the "
                    f"model has odim {self.config.odim}"
                )
        # Train mode from the start: from_pretrained returns HF models in eval mode and
        # Lightning keeps the modes it finds (frozen pretrained frontends stay in eval).
        self.model = E2E(self.config).train()
        # A --use-qlora checkpoint holds only the adapters and new modules (see
        # on_save_checkpoint); on_load_checkpoint checks its keys instead.
        self.strict_loading = not self.model.qlora_applied
        path: Optional[str] = hparams.get("pretrained_model_path")
        if path:
            parts = [what for what in TRANSFER_PREFIXES if hparams.get(f"transfer_{what}")]
            state, _, _ = load_checkpoint(path)  # read once: the AR scorer comes from the same checkpoint
            self._initialise_from(path, state, parts[0] if parts else None)
            if hparams.get("transfer_ar_scorer"):
                self._initialise_ar_scorer(path, state)
        if hparams.get("init_audio_from") or hparams.get("init_video_from"):
            self._initialise_from_streams(hparams.get("init_audio_from"), hparams.get("init_video_from"),
                                          hparams.get("init_encoder_from") or "audio")
        # --freeze-param: after the initialisation, which fills what stays frozen
        self._frozen = freeze(self.model, hparams.get("freeze_param") or [])
        self.skipped_batches = 0
        # the batches accumulated into the coming optimiser step (--accumulate-grad-batches)
        self._step_losses: List[torch.Tensor] = []
        self._step_paths: List[str] = []
        self._step_parts: List[Dict[str, torch.Tensor]] = []  # each batch's loss terms
        self._buffer_backup: Dict[str, torch.Tensor] = {}
        self._wer_counts = torch.zeros(2, dtype=torch.float64)  # word errors, reference words

    def train(self, mode: bool = True) -> "ModelModule":
        """Training mode for everything but the ``--freeze-param`` modules, which stay in eval."""
        super().train(mode)
        keep_frozen_in_eval(getattr(self, "_frozen", ()))
        return self

    def _initialise_from(self, path: str, state: Dict[str, torch.Tensor], what: Optional[str]) -> None:
        """The whole model from ``path``, or only its ``what`` part (see :func:`select_for_transfer`)."""
        if what:
            subset = select_for_transfer(state, what, self.config.modality)
            if not subset:
                raise ValueError(f"--pretrained-model-path {path}: no {what} weights found")
            modules = {k.split(".")[0] for k in subset}
            expected = {k: v.shape for k, v in self.model.state_dict().items()}
            bad = [k for k in expected if k.split(".")[0] in modules and k not in subset]
            bad += [k for k, v in subset.items() if k not in expected or v.shape != expected[k]]
            if bad:
                raise ValueError(f"--pretrained-model-path {path}: {what} weights do not match the model: {bad[:5]}")
            self.model.load_state_dict(subset, strict=False)
        else:
            load_state_checked(self.model, state, f"--pretrained-model-path {path}")

    def _initialise_ar_scorer(self, path: str, state: Dict[str, torch.Tensor]) -> None:
        """``--transfer-ar-scorer``: the auxiliary AR decoder of this Paraformer from the decoder
        of the checkpoint ``path`` (its weights ``state``)."""
        self.model.load_state_dict(select_ar_scorer(state, self.model, path), strict=False)
        log.info("auxiliary autoregressive decoder from the decoder of %s", path)

    def _initialise_from_streams(self, audio_path: Optional[str], video_path: Optional[str], encoder_from: str) -> None:
        """``--init-audio-from`` + ``--init-video-from``: see :mod:`espnet.training.av_init`."""
        from espnet.training.av_init import audio_visual_init_state

        if self.config.modality != "audiovisual":
            raise ValueError(f"--init-audio-from/--init-video-from initialise an audio-visual model; this is a "
                             f"{self.config.modality} model")
        if not audio_path or not video_path:
            raise ValueError("--init-audio-from and --init-video-from go together (one checkpoint each)")
        state = audio_visual_init_state(self.model, load_checkpoint(audio_path)[0], load_checkpoint(video_path)[0],
                                        encoder_from, sources={"audio": audio_path, "video": video_path})
        self.model.load_state_dict(state, strict=False)
        log.info("initialised from %s (audio frontend%s) and %s (video frontend%s)", audio_path,
                 ", encoder, decoder, CTC" if encoder_from == "audio" else "", video_path,
                 ", encoder, decoder, CTC" if encoder_from == "video" else "")

    def forward_batch(self, batch: Dict[str, torch.Tensor]):
        return self.model(batch_inputs(batch), batch["targets"], texts=self.batch_texts(batch))

    def batch_texts(self, batch: Dict[str, Any]) -> List[Optional[str]]:
        """Reference texts of a batch: the label list's transcripts, else text recovered
        from the SentencePiece ids (``None`` where neither exists: a decoder trained on
        text says so; the pre-flight check reports such lists before training)."""
        texts = list(batch.get("texts") or [None] * batch["targets"].size(0))
        if self.text_transform is None:
            return texts
        return [t if t is not None else self.text_transform.post_process(batch["targets"][i])
                for i, t in enumerate(texts)]

    def _step(self, batch: Dict[str, torch.Tensor], prefix: str) -> torch.Tensor:
        out = self.model.losses(batch_inputs(batch), batch["targets"], texts=self.batch_texts(batch))
        loss, loss_ctc, loss_att, acc = out["loss"], out["loss_ctc"], out["loss_att"], out["acc"]
        extra = {k: v for k, v in out.items() if k.startswith("loss_") and k not in ("loss_ctc", "loss_att")
                 and torch.is_tensor(v) and v.dim() == 0}  # scalar terms only (not loss_per_utt)
        if prefix == "":  # the non-finite check names the parts of a non-finite loss
            self._step_parts.append({"loss_ctc": loss_ctc.detach(), "loss_att": loss_att.detach(),
                                     **{k: v.detach() for k, v in extra.items()}})
        bsz = batch["targets"].size(0)
        on_step = prefix == ""
        # epoch-only values are averaged over the DDP ranks (one reduction at the epoch end)
        self.log(f"loss{prefix}", loss, on_step=on_step, on_epoch=True, batch_size=bsz, prog_bar=True,
                 sync_dist=not on_step)
        self.log(f"loss_ctc{prefix}", loss_ctc, on_step=False, on_epoch=True, batch_size=bsz, sync_dist=True)
        self.log(f"loss_att{prefix}", loss_att, on_step=False, on_epoch=True, batch_size=bsz, sync_dist=True)
        self.log(f"decoder_acc{prefix}", acc, on_step=on_step, on_epoch=True, batch_size=bsz, sync_dist=not on_step)
        for name, value in extra.items():  # a decoder's own loss terms (the Paraformer's loss_ce, loss_quantity)
            self.log(f"{name}{prefix}", value, on_step=False, on_epoch=True, batch_size=bsz, sync_dist=True)
        return loss

    def training_step(self, batch, batch_idx):
        loss = self._step(batch, "")
        self._step_losses.append(loss.detach())
        self._step_paths.extend(batch.get("paths") or [])
        return loss

    def on_train_batch_start(self, batch, batch_idx) -> None:
        torch.manual_seed(derive_seed(self.hparams.get("seed", 0), self.global_rank, self.current_epoch, batch_idx))
        if self.hparams.get("skip_nonfinite") and not self._step_losses:
            # first batch of an optimiser step: a skipped step must not leave its BatchNorm statistics
            self._buffer_backup = {n: b.detach().clone() for n, b in self.model.named_buffers()}

    def on_before_optimizer_step(self, optimizer) -> None:
        """Stop (or skip the step) at the first non-finite loss of the step's batches, gradient
        norm or buffer (BatchNorm statistics). Under DDP the decision is shared, so every rank
        stops or skips at the same step."""
        try:
            self._check_finite_step()
        finally:
            self._step_losses, self._step_paths, self._step_parts = [], [], []

    def _check_finite_step(self) -> None:
        losses = torch.stack(self._step_losses) if self._step_losses else torch.zeros(1)
        grads = [p.grad.detach() for p in self.model.parameters() if p.grad is not None]
        norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g.float()) for g in grads])) \
            if grads else torch.zeros((), device=losses.device)
        found = []
        bad_losses = [float(v) for v in losses if not bool(torch.isfinite(v))]
        if bad_losses:
            bad_parts = [f"{name} {float(v):g}" for parts in self._step_parts for name, v in parts.items()
                         if not bool(torch.isfinite(v))]
            found.append(f"loss {bad_losses[0]:g}" + (f" ({', '.join(dict.fromkeys(bad_parts))})" if bad_parts else ""))
        # fp16 mixed precision: inf gradients are routine; GradScaler skips those steps itself
        if not str(self.trainer.precision).startswith("16") and not bool(torch.isfinite(norm)):
            found.append(f"gradient norm {float(norm):g}")
        bad_buffers = [n for n, b in self.model.named_buffers() if b.is_floating_point() and not bool(torch.isfinite(b).all())]
        if bad_buffers:
            found.append(f"buffer {bad_buffers[0]}")
        if not self.trainer.strategy.reduce_boolean_decision(bool(found), all=False):
            return
        # every rank takes part (the decision above is shared), so every rank's error names the culprit
        reports = [(found, list(self._step_paths), len(self._step_losses))]
        if self.trainer.world_size > 1:
            reports = [None] * self.trainer.world_size
            torch.distributed.all_gather_object(reports, (found, list(self._step_paths), len(self._step_losses)))
        where = describe_nonfinite(self.current_epoch, self.global_step, reports)
        if self.hparams.get("skip_nonfinite"):
            self.skipped_batches += 1
            log.info("skipped (--skip-nonfinite): %s", where)
            for p in self.model.parameters():
                p.grad = None
            with torch.no_grad():
                for name, buffer in self.model.named_buffers():
                    buffer.copy_(self._buffer_backup[name])
            return
        raise NonFiniteError(f"{where}; training stopped, no model_avg written. Lower --lr, check these "
                             f"utterances, or pass --skip-nonfinite to skip such batches")

    def validation_step(self, batch, batch_idx):
        loss = self._step(batch, "_val")
        if self._decoding_epoch():
            from espnet.asr.evaluate import corpus_wer

            refs, hyps = decode_batch(self.model, batch, self.text_transform, self.batch_texts,
                                      ctc_weight=self.config.ctc_weight,
                                      max_new_tokens=self.hparams.get("max_new_tokens", 64))
            scores = corpus_wer(refs, hyps)
            self._wer_counts += torch.tensor([scores["errors"], scores["ref_words"]], dtype=torch.float64)
        return loss

    def _decoding_epoch(self) -> bool:
        every = self.hparams.get("val_wer_every") or 0
        return every > 0 and (self.current_epoch + 1) % every == 0

    def on_validation_epoch_start(self) -> None:
        self._wer_counts.zero_()

    def on_validation_epoch_end(self) -> None:
        if not self._decoding_epoch():
            return
        counts = self.trainer.strategy.reduce(self._wer_counts.to(self.device), reduce_op="sum")
        self.log("wer_val", float(counts[0]) / max(float(counts[1]), 1.0), prog_bar=True, sync_dist=False)

    def on_train_epoch_start(self) -> None:
        dm = getattr(self.trainer, "datamodule", None)
        sampler = getattr(dm, "train_sampler", None)
        if sampler is not None:
            sampler.set_epoch(self.current_epoch)

    def configure_gradient_clipping(self, optimizer, gradient_clip_val=None, gradient_clip_algorithm=None) -> None:
        """Lightning's clipping, except for a fused optimiser without a gradient scaler (bf16
        mixed precision): clipped here by the norm of all its gradients, as Lightning clips.
        bf16 needs no loss scaling, so the gradients are in true scale when clipped; Lightning
        refuses to clip any optimiser that unscales gradients itself under mixed precision, a
        guard that matters only with fp16's scaler (where the optimiser stays unfused)."""
        fused = bool(getattr(optimizer, "_step_supports_amp_scaling", False))
        if gradient_clip_val and fused and getattr(self.trainer.precision_plugin, "scaler", None) is None:
            if gradient_clip_algorithm not in (None, "norm"):
                raise ValueError(f"gradient clipping by {gradient_clip_algorithm} is not supported with the fused "
                                 "optimiser; clip by norm")
            params = [p for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
            torch.nn.utils.clip_grad_norm_(params, float(gradient_clip_val))
            return
        super().configure_gradient_clipping(optimizer, gradient_clip_val, gradient_clip_algorithm)

    def configure_optimizers(self):
        hp = self.hparams
        return adamw_warmup_cosine([p for p in self.model.parameters() if p.requires_grad], self.trainer,
                                   hp["lr"], hp["weight_decay"], hp["warmup_epochs"], hp["max_epochs"])

    def on_save_checkpoint(self, checkpoint: Dict[str, Any]) -> None:
        checkpoint["model_config"] = self.config.to_dict()
        checkpoint["rng_states"] = capture_rng_states()
        if self.model.qlora_applied:
            checkpoint["state_dict"] = {f"model.{k}": v for k, v in self.model.checkpoint_state_dict().items()}

    def on_load_checkpoint(self, checkpoint: Dict[str, Any]) -> None:
        if "rng_states" in checkpoint:
            restore_rng_states(checkpoint["rng_states"])
        if self.model.qlora_applied:  # resuming: the same subset must come back (Lightning then loads it)
            from espnet.training.checkpoints import check_state, strip_lightning_prefix

            check_state(self.model, strip_lightning_prefix(checkpoint["state_dict"], "--ckpt-path"), "--ckpt-path")
