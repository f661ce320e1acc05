"""One training run of ``train.py``: the Lightning trainer, logger and callbacks, training,
and the end-of-run steps (averaging, merged export, index, test decoding)."""

import argparse
import os
import sys
import warnings


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


def build_trainer(args: argparse.Namespace, run_dir: str, callbacks, logger):
    """The Lightning ``Trainer`` of a run (devices, precision, DDP, clipping, accumulation).
    ``--precision auto`` not resolved yet (:func:`resolve_run_precision`) is resolved here."""
    from pytorch_lightning import Trainer

    from espnet.training.distributed import ddp_settings

    if args.precision == "auto":
        resolve_run_precision(args)

    return Trainer(
        default_root_dir=run_dir,
        max_epochs=args.max_epochs,
        accelerator=args.accelerator,
        precision=args.precision,
        **ddp_settings(args.gpus, args.num_nodes, args.accelerator, timeout_s=args.dist_timeout),
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


def resolve_run_precision(args: argparse.Namespace, log=print) -> str:
    """Replace ``--precision auto`` by its concrete value for this run's device (see
    :mod:`espnet.training.precision`) and print the choice; returns it."""
    import torch

    from espnet.training.distributed import uses_cuda
    from espnet.training.precision import resolve_precision

    mps = getattr(torch.backends, "mps", None)
    if uses_cuda(args.accelerator):
        device = "cuda"
    elif args.accelerator == "mps" or (args.accelerator == "auto" and mps is not None and mps.is_available()):
        device = "mps"
    else:
        device = "cpu"
    args.precision, reason = resolve_precision(args.precision, device)
    log(f"precision: {args.precision} ({reason})")
    return args.precision


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
    from espnet.training.distributed import MetricsOnEveryRank, RanksAgree, collective_failure, uses_cuda
    from espnet.training.interrupt import SaveOnSignal, TrainingInterrupted
    from espnet.training.model_module import ModelModule
    from espnet.training.resume import check_resume_matches, read_resume_checkpoint
    from espnet.training.throughput import ThroughputMonitor
    from espnet.training.hparams import TrainingHparams
    from espnet.training.tokenizer_files import copy_tokenizer, tokenizer_names

    if args.accelerator in ("gpu", "cuda") and not torch.cuda.is_available():
        raise ValueError(f"--accelerator {args.accelerator} requested but no CUDA device is available")
    resolve_run_precision(args)
    if args.precision.startswith("16") and not uses_cuda(args.accelerator):
        raise ValueError("--precision 16-mixed needs a GPU (none found); use bf16-mixed on CPU")
    if not uses_cuda(args.accelerator):
        from espnet.training.cpu_threads import apply_num_threads

        apply_num_threads(args.num_threads)
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
    hparams = TrainingHparams.from_args(
        args, config.to_dict(), tokenizer_files, tokenizer.fingerprint if tokenizer is not None else None).to_dict()
    module = ModelModule(hparams, text_transform=tokenizer)
    if args.compile:
        # in place: the state dict keeps its keys; decoding (validation WER) runs uncompiled
        module.model.compile(backend=args.compile)
        print(f"compiled: torch.compile(backend={args.compile!r}) of the model's training forward")
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
                            media_cache_gb=args.media_cache_gb, modality_dropout=args.modality_dropout,
                            train_snrs=args.train_snrs)
    monitor = ("wer_val" if args.val_wer_every else "loss_val") if args.val_file else None
    policy = CheckpointPolicy(run_dir, save_every=args.save_every, keep_last=args.keep_last, monitor=monitor,
                              check_every=args.val_wer_every or 1, patience=args.early_stop_patience,
                              index_extra={"tokenizer": tokenizer_files})
    on_signal = SaveOnSignal(os.path.join(run_dir, "last.ckpt"), grace_s=args.signal_grace)
    # MetricsOnEveryRank first: it keeps the ranks' metric syncs in step (see espnet.training.distributed)
    callbacks = [MetricsOnEveryRank(), policy, LearningRateMonitor(logging_interval="step"), ThroughputMonitor(),
                 on_signal, RanksAgree()]
    if args.num_threads == "idle" and not uses_cuda(args.accelerator):
        from espnet.training.idle_threads import IdleThreads

        callbacks.append(IdleThreads())
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
    except RuntimeError as err:
        failure = collective_failure(err, trainer.global_rank, trainer.world_size, trainer.current_epoch,
                                     trainer.global_step, args.dist_timeout)
        if failure is None:
            raise
        raise failure from err
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
    from espnet.nets.pytorch_backend.decoder.base_decoder import DecodeOptions
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
        options = DecodeOptions(beam_size=args.beam_size, ctc_weight=args.ctc_weight,
                                max_new_tokens=args.max_new_tokens)
        result = evaluate(model, tokenizer, args.root_dir, args.test_file, options, seed=args.seed, device=device,
                          skip_lines=skip_lines.get(args.test_file, frozenset()), skip_invalid=args.skip_invalid)
        for row in result.left_out:
            print(f"left out (--skip-invalid): {row['reason']}")
        out = os.path.join(run_dir, "test_results.json")
        print(f"test results ({os.path.basename(model_path)}): {out}")
        print(f"WER: {result.wer}")  # before the file is written: a failed write does not lose it
        write_json(result, out)
    return 0
