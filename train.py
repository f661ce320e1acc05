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
    p.add_argument("--warmup-epochs", type=int, default=5, help="Warm-up epochs. (Default: 5)")
    p.add_argument("--max-epochs", type=int, default=75, help="Epochs. (Default: 75)")
    p.add_argument("--max-frames", type=int, default=1600, help="Frames (25 Hz) per batch. (Default: 1600)")
    p.add_argument("--lr", type=float, default=1e-3, help="Peak learning rate. (Default: 1e-3)")
    p.add_argument("--weight-decay", type=float, default=0.03, help="AdamW weight decay. (Default: 0.03)")
    p.add_argument("--ctc-weight", type=float, default=0.1, help="CTC weight in the hybrid loss. (Default: 0.1)")
    p.add_argument("--train-num-buckets", type=int, default=400, help="Length buckets for batching. (Default: 400)")
    p.add_argument("--ckpt-path", default=None, help="Lightning checkpoint to resume training from.")
    p.add_argument("--num-workers", type=int, default=2, help="DataLoader workers. (Default: 2)")
    p.add_argument("--logger", default="csv", choices=["csv", "tensorboard", "wandb"], help="(Default: csv)")
    p.add_argument("--seed", type=int, default=42, help="Random seed. (Default: 42)")
    p.add_argument("--noise-file", default=None,
                   help="Noise wav (16 kHz) for audio augmentation. (Default: ROOT/babble.wav if present, "
                        "else the built-in procedural babble)")
    p.add_argument("--beam-size", type=int, default=40, help="Beam for --test-file decoding. (Default: 40)")
    p.add_argument("--merge-lora", action="store_true",
                   help="With --use-qlora: also write model_avg_N_merged.pth, the averaged model with the LoRA "
                        "adapters folded into dequantised full-precision weights (loads without --use-qlora).")
    p.add_argument("--skip-nonfinite", action="store_true",
                   help="Skip the update of a batch whose loss or gradient norm is NaN/inf (counted and reported) "
                        "instead of stopping training.")
    add_failure_args(p, "training")
    add_model_args(p)
    add_tokenizer_args(p)
    add_generate_args(p)
    args = p.parse_args(argv)
    if args.transfer_frontend and args.transfer_encoder:
        p.error("--transfer-frontend and --transfer-encoder are mutually exclusive")
    if args.merge_lora and not args.use_qlora:
        p.error("--merge-lora needs --use-qlora (there are no LoRA adapters to merge otherwise)")
    if (args.transfer_frontend or args.transfer_encoder) and not args.pretrained_model_path:
        p.error("--transfer-frontend/--transfer-encoder need --pretrained-model-path")
    if not 0.0 <= args.ctc_weight <= 1.0:
        p.error(f"--ctc-weight must be in [0, 1], got {args.ctc_weight}")
    return args


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

    return run_cli(lambda: train(args), debug=args.debug)


def train(args: argparse.Namespace) -> int:
    """Train (and optionally decode ``--test-file``); raises on bad input (see ``run_cli``)."""
    import pickle

    import torch
    from pytorch_lightning import Trainer, seed_everything
    from pytorch_lightning.callbacks import LearningRateMonitor, ModelCheckpoint

    from datamodule.data_module import DataModule, label_path
    from datamodule.noise import resolve_noise_file
    from datamodule.preflight import run_preflight
    from espnet.asr.evaluate import evaluate, write_json
    from espnet.training.checkpoints import average_last_checkpoints, checkpoint_load_error
    from espnet.training.cli_args import load_tokenizer, resolve_model_config
    from espnet.training.distributed import RanksAgree, ddp_settings, uses_cuda
    from espnet.training.interrupt import SaveOnSignal, TrainingInterrupted
    from espnet.training.model_module import ModelModule

    if args.accelerator in ("gpu", "cuda") and not torch.cuda.is_available():
        raise ValueError(f"--accelerator {args.accelerator} requested but no CUDA device is available")
    if args.precision.startswith("16") and not uses_cuda(args.accelerator):
        raise ValueError("--precision 16-mixed needs a GPU (none found); use bf16-mixed on CPU")
    if args.ckpt_path and args.ckpt_path not in ("last", "best", "hpc") and not os.path.isfile(args.ckpt_path):
        raise FileNotFoundError(f"--ckpt-path: checkpoint not found: {args.ckpt_path}")
    # A mid-epoch checkpoint resumes at the right batch: the DataModule's state holds the sampler
    # position (Lightning only knows about loaders with their own state_dict, and warns).
    warnings.filterwarnings("ignore", message="You're resuming from a checkpoint that ended before the epoch ended")
    seed_everything(args.seed, workers=True)
    tokenizer = load_tokenizer(args.sp_model_path, args.dict_path)
    odim = tokenizer.odim if tokenizer is not None else None
    config = resolve_model_config(args, odim)
    config.ctc_weight = args.ctc_weight
    if args.precision in ("bf16-mixed", "bf16-true"):
        config.pretrained_dtype = "bfloat16"  # load pretrained weights in bf16 (else float32)
    if config.use_qlora and args.precision in ("bf16-mixed", "bf16-true"):
        config.qlora_compute_dtype = "bfloat16"
    resolve_noise_file(args.root_dir, args.noise_file)
    lists = [(args.train_file, args.max_frames), (args.val_file, args.max_frames), (args.test_file, None)]
    skip_lines = run_preflight(args.root_dir, [(f, label_path(args.root_dir, f), n) for f, n in lists if f],
                               config.modality, odim, skip_invalid=args.skip_invalid,
                               need_transcript=tokenizer is None)
    hparams = {
        "model_config": config.to_dict(),
        "sp_model_path": os.path.abspath(args.sp_model_path) if args.sp_model_path else None,
        "dict_path": os.path.abspath(args.dict_path) if args.dict_path else None,
        "lr": args.lr,
        "weight_decay": args.weight_decay,
        "warmup_epochs": args.warmup_epochs,
        "max_epochs": args.max_epochs,
        "pretrained_model_path": args.pretrained_model_path,
        "transfer_frontend": args.transfer_frontend,
        "transfer_encoder": args.transfer_encoder,
        "root_dir": args.root_dir,
        "train_file": args.train_file,
        "val_file": args.val_file,
        "max_frames": args.max_frames,
        "seed": args.seed,
        "skip_nonfinite": args.skip_nonfinite,
    }
    module = ModelModule(hparams)
    from espnet.nets.pytorch_backend.lora.qlora_manager import parameter_table

    print(parameter_table(module.model))
    datamodule = DataModule(args.root_dir, args.train_file, args.val_file, config.modality,
                            max_frames=args.max_frames, train_num_buckets=args.train_num_buckets,
                            num_workers=args.num_workers, noise_file=args.noise_file, seed=args.seed,
                            skip_lines=skip_lines, audio_utterance_norm=module.model.audio_utterance_norm)
    run_dir = os.path.join(args.exp_dir, args.exp_name)
    os.makedirs(run_dir, exist_ok=True)
    checkpoint = ModelCheckpoint(dirpath=run_dir, filename="{epoch}", monitor="monitoring_step", mode="max",
                                 save_top_k=10, save_last=True)
    on_signal = SaveOnSignal(os.path.join(run_dir, "last.ckpt"))
    trainer = Trainer(
        default_root_dir=run_dir,
        max_epochs=args.max_epochs,
        accelerator=args.accelerator,
        precision=args.precision,
        **ddp_settings(args.gpus, args.num_nodes, args.accelerator),
        use_distributed_sampler=False,
        callbacks=[checkpoint, LearningRateMonitor(logging_interval="step"), on_signal, RanksAgree()],
        logger=build_logger(args, run_dir),
        gradient_clip_val=10.0,
        num_sanity_val_steps=0,
    )
    try:
        trainer.fit(model=module, datamodule=datamodule, ckpt_path=args.ckpt_path, weights_only=True)
    except TrainingInterrupted as stop:
        print(f"stopped: {stop}", file=sys.stderr)
        return stop.exit_code
    except pickle.UnpicklingError as err:
        raise checkpoint_load_error(f"--ckpt-path {args.ckpt_path}", err) from err
    if module.skipped_batches:
        print(f"note: skipped {module.skipped_batches} batch(es) with a non-finite loss or gradient norm "
              f"(--skip-nonfinite); see the log for their utterances")
    if on_signal.signum is not None:
        print(f"stopped: signal {on_signal.signum} received after the last batch; checkpoints are in {run_dir}",
              file=sys.stderr)
        return 128 + on_signal.signum
    if trainer.global_rank != 0:
        return 0
    avg_path = average_last_checkpoints(run_dir, 10, meta={k: hparams[k] for k in ("model_config", "sp_model_path", "dict_path")})
    print(f"checkpoints: {run_dir}")
    print(f"averaged model: {avg_path}")
    if args.merge_lora:
        from espnet.training.export import export_merged

        print(f"merged full-precision model: {export_merged(avg_path)}")
    if args.test_file:
        from espnet.asr.evaluate import load_model
        from espnet.training.checkpoints import load_checkpoint

        state, _, _ = load_checkpoint(avg_path)
        model = load_model(config, state, avg_path)
        device = "cuda" if torch.cuda.is_available() and args.accelerator != "cpu" else "cpu"
        if args.noise_file:
            print("note: --noise-file is used for training augmentation only; --test-file is decoded clean")
        result = evaluate(model, tokenizer, args.root_dir, args.test_file, beam_size=args.beam_size,
                          ctc_weight=args.ctc_weight, seed=args.seed, device=device,
                          max_new_tokens=args.max_new_tokens, skip_lines=skip_lines.get(args.test_file, frozenset()))
        out = os.path.join(run_dir, "test_results.json")
        write_json(result, out)
        print(f"test results: {out}")
        print(f"WER: {result.wer}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
