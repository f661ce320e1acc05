"""Train an Auto-AVSR style recogniser (hybrid CTC/attention) with PyTorch Lightning."""

import argparse
import logging
import os
import sys
import warnings


def parse_args(argv=None) -> argparse.Namespace:
    from espnet.training.cli_args import add_failure_args, add_generate_args, add_model_args, add_tokenizer_args

    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--exp-dir", default="./exp", help="Directory for checkpoints and logs. (Default: ./exp)")
    p.add_argument("--exp-name", default="avsr", help="Experiment name (subfolder of --exp-dir). (Default: avsr)")
    p.add_argument("--group-name", default=None, help="Run group (wandb group; log subfolder for csv/tensorboard).")
    p.add_argument("--root-dir", required=True, help="Root of the preprocessed dataset (labels under ROOT/labels).")
    p.add_argument("--train-file", required=True, help="Training label list (in ROOT/labels, or a path).")
    p.add_argument("--val-file", default=None, help="Validation label list (optional).")
    p.add_argument("--test-file", default=None, help="Label list decoded with the averaged model after training (optional).")
    p.add_argument("--num-nodes", type=int, default=1, help="Number of machines. (Default: 1)")
    p.add_argument("--gpus", type=int, default=None, help="Devices per machine. (Default: all available)")
    p.add_argument("--accelerator", default="auto", choices=["auto", "cpu", "gpu", "cuda", "mps"],
                   help="Lightning accelerator. (Default: auto = GPU when present, else CPU)")
    p.add_argument("--precision", default="32", choices=["32", "32-true", "bf16-mixed", "16-mixed", "bf16-true"],
                   help="Lightning precision. fp16 is GPU-only; bf16 works on CPU. (Default: 32)")
    p.add_argument("--pretrained-model-path", default=None, help="Initialise from this checkpoint (.pth or .ckpt).")
    p.add_argument("--transfer-frontend", action="store_true", help="Load only the frontend from --pretrained-model-path.")
    p.add_argument("--transfer-encoder", action="store_true",
                   help="Load frontend, proj_encoder and encoder from --pretrained-model-path.")
    p.add_argument("--transfer-backend", action="store_true",
                   help="Load everything after the frontend (proj_encoder, encoder, decoder, CTC) from "
                        "--pretrained-model-path, which may be a model of another modality (e.g. start a video-only "
                        "model from a trained audio-only one); the frontend starts afresh.")
    p.add_argument("--init-audio-from", default=None, metavar="CKPT",
                   help="Audio-visual models: take the audio frontend (and the fusion's audio projection) from this "
                        "audio-only checkpoint; with --init-video-from.")
    p.add_argument("--init-video-from", default=None, metavar="CKPT",
                   help="Audio-visual models: take the video frontend (and the fusion's video projection) from this "
                        "video-only checkpoint; with --init-audio-from.")
    p.add_argument("--init-encoder-from", default="audio", choices=["audio", "video"],
                   help="Which of the two checkpoints gives the Conformer encoder, decoder and CTC head. "
                        "(Default: audio)")
    p.add_argument("--modality-dropout", type=float, default=0.0, metavar="P",
                   help="Audio-visual training: each utterance comes without its video or its audio (equally "
                        "likely) with probability P; a learned embedding stands in for the missing stream. "
                        "(Default: 0)")
    p.add_argument("--warmup-epochs", type=int, default=5, help="Warm-up epochs. (Default: 5)")
    p.add_argument("--max-epochs", type=int, default=75, help="Epochs. (Default: 75)")
    p.add_argument("--max-frames", type=int, default=1600, help="Frames (25 Hz) per batch. (Default: 1600)")
    p.add_argument("--lr", type=float, default=1e-3, help="Peak learning rate. (Default: 1e-3)")
    p.add_argument("--weight-decay", type=float, default=0.03, help="AdamW weight decay. (Default: 0.03)")
    p.add_argument("--ctc-weight", type=float, default=0.1, help="CTC weight in the hybrid loss. (Default: 0.1)")
    p.add_argument("--train-num-buckets", type=int, default=400, help="Length buckets for batching. (Default: 400)")
    p.add_argument("--ckpt-path", default=None,
                   help="Lightning checkpoint to resume training from ('last' / 'best' = that file of this run).")
    p.add_argument("--num-workers", type=int, default=2, help="DataLoader workers. (Default: 2)")
    p.add_argument("--num-threads", type=int, default=0,
                   help="PyTorch threads of a CPU run; 0 = auto: the cores idle when training starts (measured "
                        "over half a second) minus --num-workers, at least 1. (Default: 0)")
    p.add_argument("--media-cache-gb", type=float, default=2.0,
                   help="Decode the clips of --train-file and --val-file once, before training, and keep up to this "
                        "many GiB of them in memory (uint8 frames, float32 audio); 0 = decode every clip in every "
                        "epoch. (Default: 2)")
    p.add_argument("--logger", default="csv", choices=["csv", "tensorboard", "wandb"], help="(Default: csv)")
    p.add_argument("--seed", type=int, default=42, help="Random seed. (Default: 42)")
    p.add_argument("--noise-file", default=None,
                   help="Noise wav (16 kHz) for audio augmentation. (Default: ROOT/babble.wav if present, "
                        "else the built-in procedural babble)")
    p.add_argument("--beam-size", type=int, default=40, help="Beam for --test-file decoding. (Default: 40)")
    p.add_argument("--merge-lora", action="store_true",
                   help="With --use-qlora: also write model_avg_N_merged.pth (or best_merged.pth / final_merged.pth "
                        "with --average-last 0), that model with the LoRA adapters folded into dequantised "
                        "full-precision weights (loads without --use-qlora).")
    p.add_argument("--skip-nonfinite", action="store_true",
                   help="Skip the update of a batch whose loss or gradient norm is NaN/inf (counted and reported) "
                        "instead of stopping training.")
    add_checkpoint_args(p)
    add_failure_args(p, "training")
    add_model_args(p)
    add_tokenizer_args(p)
    add_generate_args(p)
    args = p.parse_args(argv)
    if args.transfer_frontend + args.transfer_encoder + args.transfer_backend > 1:
        p.error("--transfer-frontend, --transfer-encoder and --transfer-backend are mutually exclusive")
    if args.merge_lora and not args.use_qlora:
        p.error("--merge-lora needs --use-qlora (there are no LoRA adapters to merge otherwise)")
    if (args.transfer_frontend or args.transfer_encoder or args.transfer_backend) and not args.pretrained_model_path:
        p.error("--transfer-frontend/--transfer-encoder/--transfer-backend need --pretrained-model-path")
    if bool(args.init_audio_from) != bool(args.init_video_from):
        p.error("--init-audio-from and --init-video-from go together (an audio-only and a video-only checkpoint)")
    if args.init_audio_from and args.pretrained_model_path:
        p.error("--init-audio-from/--init-video-from and --pretrained-model-path are alternatives; give one")
    if not 0.0 <= args.modality_dropout <= 1.0:
        p.error(f"--modality-dropout must be in [0, 1], got {args.modality_dropout}")
    if args.num_threads < 0:
        p.error(f"--num-threads must be >= 0 (0 = auto), got {args.num_threads}")
    if args.media_cache_gb < 0:
        p.error(f"--media-cache-gb must be >= 0, got {args.media_cache_gb}")
    if not 0.0 <= args.ctc_weight <= 1.0:
        p.error(f"--ctc-weight must be in [0, 1], got {args.ctc_weight}")
    check_checkpoint_args(p, args)
    return args


def add_checkpoint_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("checkpoints, early stopping, accumulation, diagnostics")
    g.add_argument("--save-every", type=int, default=1, metavar="N",
                   help="Write epoch=E.ckpt every N epochs. (Default: 1)")
    g.add_argument("--keep-last", type=int, default=None, metavar="K",
                   help="Keep the K most recent epoch=E.ckpt files (-1 = all, 0 = none). (Default: --average-last)")
    g.add_argument("--average-last", type=int, default=10, metavar="K",
                   help="At the end, write model_avg_K.pth, the average of the last K epoch checkpoints "
                        "(fewer if fewer exist); 0 = no averaging. (Default: 10, as Auto-AVSR)")
    g.add_argument("--val-wer-every", type=int, default=0, metavar="N",
                   help="Every N epochs also decode --val-file (beam 1) and log its WER as wer_val; best.ckpt and "
                        "early stopping then follow wer_val instead of loss_val. (Default: 0 = never)")
    g.add_argument("--early-stop-patience", type=int, default=None, metavar="P",
                   help="Stop when the validation metric (loss_val, or wer_val) has not improved in P checks in a "
                        "row (a check per epoch, or per --val-wer-every epochs). (Default: no early stopping)")
    g.add_argument("--accumulate-grad-batches", type=int, default=1, metavar="K",
                   help="Accumulate the gradients of K batches per optimiser step; the schedule counts optimiser "
                        "steps. (Default: 1)")
    g.add_argument("--log-param-updates", type=int, nargs="?", const=1, default=None, metavar="K",
                   help="Every K optimiser steps (K omitted: every step), log per component the gradient norm, "
                        "parameter norm and update/parameter ratio, and the learning rate, to --logger.")
    g.add_argument("--log-every-n-steps", type=int, default=50, metavar="N",
                   help="Send the per-step values (loss, learning rate, frames_per_s, memory) to --logger every N "
                        "optimiser steps. (Default: 50, Lightning's)")


def check_checkpoint_args(p: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Range and consistency checks of the checkpoint/accumulation flags (``p.error`` exits)."""
    for flag, value, least in (("--max-epochs", args.max_epochs, 1), ("--warmup-epochs", args.warmup_epochs, 0),
                               ("--save-every", args.save_every, 1), ("--average-last", args.average_last, 0),
                               ("--val-wer-every", args.val_wer_every, 0),
                               ("--accumulate-grad-batches", args.accumulate_grad_batches, 1),
                               ("--early-stop-patience", args.early_stop_patience, 1),
                               ("--log-param-updates", args.log_param_updates, 1), ("--keep-last", args.keep_last, -1),
                               ("--log-every-n-steps", args.log_every_n_steps, 1)):
        if value is not None and value < least:
            p.error(f"{flag} must be >= {least}, got {value}")
    if args.keep_last is None:
        args.keep_last = args.average_last
    elif 0 <= args.keep_last < args.average_last:
        p.error(f"--average-last {args.average_last} averages the last {args.average_last} epoch checkpoints but "
                f"--keep-last {args.keep_last} keeps only {args.keep_last}")
    if not args.val_file and (args.early_stop_patience or args.val_wer_every):
        flag = "--early-stop-patience" if args.early_stop_patience else "--val-wer-every"
        p.error(f"{flag} needs --val-file (a validation metric)")


def build_logger(args: argparse.Namespace, run_dir: str):
    from pytorch_lightning import loggers

    name = args.group_name or "logs"
    if args.logger == "csv":
        return loggers.CSVLogger(save_dir=run_dir, name=name)
    if args.logger == "tensorboard":
        try:
            import tensorboard  # noqa: F401
        except ImportError:
            try:
                import tensorboardX  # noqa: F401
            except ImportError:
                raise ImportError("--logger tensorboard needs the tensorboard package: pip install tensorboard") from None
        return loggers.TensorBoardLogger(save_dir=run_dir, name=name)
    try:
        import wandb  # noqa: F401
    except ImportError:
        raise ImportError("--logger wandb needs the wandb package: pip install wandb") from None
    return loggers.WandbLogger(name=args.exp_name, project="avsr", group=args.group_name, save_dir=run_dir)


def main(argv=None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.debug else logging.INFO,
                        format="%(asctime)s %(message)s" if args.debug else "%(message)s")
    from espnet.training.cli_errors import run_cli
    from espnet.training.run_lock import run_locked

    # one run per run directory at a time (refused with one line; released when the run ends)
    return run_cli(lambda: run_locked(os.path.join(args.exp_dir, args.exp_name), lambda: train(args)),
                   debug=args.debug)


def build_trainer(args: argparse.Namespace, run_dir: str, callbacks, logger):
    """The Lightning ``Trainer`` of a run (devices, precision, DDP, clipping, accumulation)."""
    from pytorch_lightning import Trainer

    from espnet.training.distributed import ddp_settings

    return Trainer(
        default_root_dir=run_dir,
        max_epochs=args.max_epochs,
        accelerator=args.accelerator,
        precision=args.precision,
        **ddp_settings(args.gpus, args.num_nodes, args.accelerator),
        use_distributed_sampler=False,
        callbacks=callbacks,
        logger=logger,
        gradient_clip_val=10.0,
        accumulate_grad_batches=args.accumulate_grad_batches,
        log_every_n_steps=args.log_every_n_steps,
        num_sanity_val_steps=0,
    )


def resolve_ckpt_path(ckpt_path: str, run_dir: str) -> str:
    """``--ckpt-path``: a file, or ``last`` / ``best`` (that checkpoint of this run)."""
    from espnet.training.checkpoint_policy import BEST, LAST

    if ckpt_path in ("last", "best"):
        path = os.path.join(run_dir, LAST if ckpt_path == "last" else BEST)
        if not os.path.isfile(path):
            raise FileNotFoundError(f"--ckpt-path {ckpt_path}: this run has no {path}")
        return path
    if ckpt_path != "hpc" and not os.path.isfile(ckpt_path):
        raise FileNotFoundError(f"--ckpt-path: checkpoint not found: {ckpt_path}")
    return ckpt_path


def train(args: argparse.Namespace) -> int:
    """Train (and optionally decode ``--test-file``); raises on bad input (see ``run_cli``)."""
    import pickle

    import torch
    from pytorch_lightning import seed_everything
    from pytorch_lightning.callbacks import LearningRateMonitor

    from datamodule.data_module import DataModule, label_path
    from datamodule.noise import resolve_noise_file
    from datamodule.preflight import run_preflight
    from espnet.training.checkpoint_policy import CheckpointPolicy
    from espnet.training.checkpoints import checkpoint_load_error
    from espnet.training.cli_args import load_tokenizer, resolve_model_config
    from espnet.training.distributed import RanksAgree, uses_cuda
    from espnet.training.interrupt import SaveOnSignal, TrainingInterrupted
    from espnet.training.model_module import ModelModule
    from espnet.training.resume import check_resume_matches, read_resume_checkpoint
    from espnet.training.throughput import ThroughputMonitor
    from espnet.training.tokenizer_files import FINGERPRINT_KEY, copy_tokenizer, tokenizer_names

    if args.accelerator in ("gpu", "cuda") and not torch.cuda.is_available():
        raise ValueError(f"--accelerator {args.accelerator} requested but no CUDA device is available")
    if args.precision.startswith("16") and not uses_cuda(args.accelerator):
        raise ValueError("--precision 16-mixed needs a GPU (none found); use bf16-mixed on CPU")
    if not uses_cuda(args.accelerator):
        from espnet.training.cpu_threads import apply_num_threads

        apply_num_threads(args.num_threads, args.num_workers)
    run_dir = os.path.join(args.exp_dir, args.exp_name)
    ckpt_path = resolve_ckpt_path(args.ckpt_path, run_dir) if args.ckpt_path else None
    resume_state = read_resume_checkpoint(ckpt_path) if ckpt_path and ckpt_path != "hpc" else None
    # A mid-epoch checkpoint resumes at the right batch: the DataModule's state holds the sampler
    # position (Lightning only knows about loaders with their own state_dict, and warns).
    warnings.filterwarnings("ignore", message="You're resuming from a checkpoint that ended before the epoch ended")
    seed_everything(args.seed, workers=True)
    tokenizer = load_tokenizer(args.sp_model_path, args.dict_path)
    odim = tokenizer.odim if tokenizer is not None else None
    config = resolve_model_config(args, odim)
    config.ctc_weight = args.ctc_weight
    for flag, used in (("--modality-dropout", args.modality_dropout > 0), ("--init-audio-from", args.init_audio_from)):
        if used and config.modality != "audiovisual":
            raise ValueError(f"{flag} applies to audio-visual models (both --vision-encoder and --audio-encoder); "
                             f"this is a {config.modality} model")
    if args.precision in ("bf16-mixed", "bf16-true"):
        config.pretrained_dtype = "bfloat16"  # load pretrained weights in bf16 (else float32)
    if config.use_qlora and args.precision in ("bf16-mixed", "bf16-true"):
        config.qlora_compute_dtype = "bfloat16"
    resolve_noise_file(args.root_dir, args.noise_file)
    lists = [(args.train_file, args.max_frames), (args.val_file, args.max_frames), (args.test_file, None)]
    skip_lines = run_preflight(args.root_dir, [(f, label_path(args.root_dir, f), n) for f, n in lists if f],
                               config.modality, odim, skip_invalid=args.skip_invalid,
                               need_transcript=tokenizer is None, tokenizer=tokenizer)
    # the run directory will hold its tokenizer; checkpoints name it relative to themselves
    tokenizer_files = tokenizer_names(args.sp_model_path, args.dict_path)
    hparams = {
        "model_config": config.to_dict(),
        **tokenizer_files,
        FINGERPRINT_KEY: tokenizer.fingerprint if tokenizer is not None else None,
        "lr": args.lr,
        "weight_decay": args.weight_decay,
        "warmup_epochs": args.warmup_epochs,
        "max_epochs": args.max_epochs,
        "pretrained_model_path": args.pretrained_model_path,
        "transfer_frontend": args.transfer_frontend,
        "transfer_encoder": args.transfer_encoder,
        "transfer_backend": args.transfer_backend,
        "init_audio_from": args.init_audio_from,
        "init_video_from": args.init_video_from,
        "init_encoder_from": args.init_encoder_from,
        "modality_dropout": args.modality_dropout,
        "root_dir": args.root_dir,
        "train_file": args.train_file,
        "val_file": args.val_file,
        "max_frames": args.max_frames,
        "seed": args.seed,
        "skip_nonfinite": args.skip_nonfinite,
        "accumulate_grad_batches": args.accumulate_grad_batches,
        "val_wer_every": args.val_wer_every,
        "max_new_tokens": args.max_new_tokens,
    }
    module = ModelModule(hparams, text_transform=tokenizer)
    from espnet.nets.pytorch_backend.lora.qlora_manager import parameter_table

    print(parameter_table(module.model))
    if resume_state is not None:
        check_resume_matches(module.model, resume_state, ckpt_path)
        resume_state = None  # Lightning reads the file again
    os.makedirs(run_dir, exist_ok=True)
    copy_tokenizer(args.sp_model_path, args.dict_path, run_dir)
    datamodule = DataModule(args.root_dir, args.train_file, args.val_file, config.modality,
                            max_frames=args.max_frames, train_num_buckets=args.train_num_buckets,
                            num_workers=args.num_workers, noise_file=args.noise_file, seed=args.seed,
                            skip_lines=skip_lines, audio_utterance_norm=module.model.audio_utterance_norm,
                            media_cache_gb=args.media_cache_gb, modality_dropout=args.modality_dropout)
    monitor = ("wer_val" if args.val_wer_every else "loss_val") if args.val_file else None
    policy = CheckpointPolicy(run_dir, save_every=args.save_every, keep_last=args.keep_last, monitor=monitor,
                              check_every=args.val_wer_every or 1, patience=args.early_stop_patience,
                              index_extra={"tokenizer": tokenizer_files})
    on_signal = SaveOnSignal(os.path.join(run_dir, "last.ckpt"))
    callbacks = [policy, LearningRateMonitor(logging_interval="step"), ThroughputMonitor(), on_signal, RanksAgree()]
    if args.log_param_updates:
        from espnet.training.param_updates import ParamUpdateLogger

        callbacks.append(ParamUpdateLogger(args.log_param_updates))
    trainer = build_trainer(args, run_dir, callbacks, build_logger(args, run_dir))
    try:
        trainer.fit(model=module, datamodule=datamodule, ckpt_path=ckpt_path, weights_only=True)
    except TrainingInterrupted as stop:
        print(f"stopped: {stop}", file=sys.stderr)
        return stop.exit_code
    except pickle.UnpicklingError as err:
        raise checkpoint_load_error(f"--ckpt-path {ckpt_path}", err) from err
    if module.skipped_batches:
        what = "batch(es)" if args.accumulate_grad_batches == 1 else \
            f"optimiser step(s) ({args.accumulate_grad_batches} accumulated batches each)"
        print(f"note: skipped {module.skipped_batches} {what} with a non-finite loss or gradient norm "
              f"(--skip-nonfinite); see the log for their utterances")
    if policy.stopped_early:
        best = f"best {monitor} {policy.best_score:.4g} in epoch {policy.best_epoch}" if policy.best_epoch is not None \
            else f"no finite {monitor}"
        print(f"early stop after epoch {policy.last_epoch}: {monitor} did not improve in {args.early_stop_patience} "
              f"check(s); {best}")
    if on_signal.signum is not None:
        print(f"stopped: signal {on_signal.signum} received after the last batch; checkpoints are in {run_dir}",
              file=sys.stderr)
        return 128 + on_signal.signum
    if trainer.global_rank != 0:
        return 0
    return finish_run(args, run_dir, config, tokenizer, hparams, skip_lines)


def finish_run(args: argparse.Namespace, run_dir: str, config, tokenizer, hparams, skip_lines) -> int:
    """Rank 0 after training: averaging (``--average-last``), ``--merge-lora``, the index and
    the ``--test-file`` decoding of the run's model (the average, else best, else final)."""
    import torch

    from espnet.asr.evaluate import evaluate, load_model, write_json
    from espnet.training.checkpoint_policy import BEST, FINAL, read_index, update_index
    from espnet.training.checkpoints import average_last_checkpoints, epoch_checkpoints, load_checkpoint

    print(f"checkpoints: {run_dir} (index: {os.path.join(run_dir, 'checkpoints.json')})")
    index = read_index(run_dir)
    model_path = os.path.join(run_dir, BEST if index.get("best") else FINAL)
    if args.average_last and not epoch_checkpoints(run_dir):
        print(f"note: no epoch=E.ckpt to average (--save-every {args.save_every}, stopped after epoch "
              f"{index.get('final', {}).get('epoch')}); using {os.path.basename(model_path)}")
    elif args.average_last:
        meta = {k: hparams[k] for k in ("model_config", "sp_model_path", "dict_path", "tokenizer_fingerprint")}
        model_path = average_last_checkpoints(run_dir, args.average_last, meta=meta)
        averaged = load_checkpoint(model_path)[2]["averaged"]
        update_index(run_dir, averaged={"file": os.path.basename(model_path), "from": averaged})
        print(f"averaged model: {model_path}")
    if args.merge_lora:
        from espnet.training.export import export_merged

        print(f"merged full-precision model: {export_merged(model_path)}")
    if args.test_file:
        state, _, _ = load_checkpoint(model_path)
        model = load_model(config, state, model_path)
        device = "cuda" if torch.cuda.is_available() and args.accelerator != "cpu" else "cpu"
        if args.noise_file:
            print("note: --noise-file is used for training augmentation only; --test-file is decoded clean")
        result = evaluate(model, tokenizer, args.root_dir, args.test_file, beam_size=args.beam_size,
                          ctc_weight=args.ctc_weight, seed=args.seed, device=device,
                          max_new_tokens=args.max_new_tokens, skip_lines=skip_lines.get(args.test_file, frozenset()),
                          skip_invalid=args.skip_invalid)
        for row in result.left_out:
            print(f"left out (--skip-invalid): {row['reason']}")
        out = os.path.join(run_dir, "test_results.json")
        print(f"test results ({os.path.basename(model_path)}): {out}")
        print(f"WER: {result.wer}")  # before the file is written: a failed write does not lose it
        write_json(result, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
