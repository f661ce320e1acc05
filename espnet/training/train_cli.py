"""``train.py``'s command line: the flags, their checks, and the entry point that runs
:func:`espnet.training.training_run.train` behind :func:`~espnet.training.cli_errors.run_cli`."""

import argparse
import logging
import os
from typing import List, Optional

DESCRIPTION = "Train an Auto-AVSR style recogniser (hybrid CTC/attention) with PyTorch Lightning."


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    from datamodule.snr_levels import parse_snr_levels
    from espnet.training.cli_args import add_failure_args, add_generate_args, add_model_args, add_tokenizer_args
    from espnet.training.cpu_threads import IDLE, num_threads_flag

    p = argparse.ArgumentParser(prog="train.py", description=DESCRIPTION)
    p.add_argument("--exp-dir", default="./exp", help="Directory for checkpoints and logs. (Default: ./exp)")
    p.add_argument("--exp-name", default="avsr", help="Experiment name (subfolder of --exp-dir). (Default: avsr)")
    p.add_argument("--group-name", default=None, help="Run group (wandb group; log subfolder for csv/tensorboard).")
    p.add_argument("--root-dir", required=True, help="Root of the preprocessed dataset (labels under ROOT/labels).")
    p.add_argument("--train-file", required=True, help="Training label list (in ROOT/labels, or a path).")
    p.add_argument("--val-file", default=None, help="Validation label list (optional).")
    p.add_argument("--test-file", default=None, help="Label list decoded with the averaged model after training (optional).")
    p.add_argument("--num-nodes", type=int, default=1, help="Number of machines. (Default: 1)")
    p.add_argument("--gpus", type=int, default=None, help="Devices per machine. (Default: all available)")
    p.add_argument("--dist-timeout", type=float, default=1800.0, metavar="SECONDS",
                   help="Multi-process runs: a collective (gradient all-reduce, metric sync, barrier) that waits "
                        "longer than this fails with an error naming the rank and step, instead of hanging until "
                        "the job's wall-time limit. (Default: 1800)")
    p.add_argument("--signal-grace", type=float, default=60.0, metavar="SECONDS",
                   help="After SIGTERM/SIGINT the run finishes its step and writes last.ckpt; if that takes longer "
                        "than this (e.g. a collective waits for a rank that is gone), it exits at once with status "
                        "128+signal. (Default: 60)")
    p.add_argument("--accelerator", default="auto", choices=["auto", "cpu", "gpu", "cuda", "mps"],
                   help="Lightning accelerator. (Default: auto = GPU when present, else CPU)")
    p.add_argument("--precision", default="auto",
                   choices=["auto", "32", "32-true", "bf16-mixed", "16-mixed", "bf16-true"],
                   help="Lightning precision. auto = bf16-mixed where the device computes bf16 natively (a CUDA GPU "
                        "with bf16 support; a CPU with avx512_bf16 or amx_bf16), else 32; the choice is printed. "
                        "fp16 is GPU-only. (Default: auto)")
    p.add_argument("--compile", nargs="?", const="inductor", default=None, metavar="BACKEND",
                   help="torch.compile the model's training forward (backend inductor unless named, e.g. eager; on a "
                        "CPU inductor needs a C++ compiler). Off by default: compilation takes minutes and shapes that "
                        "change between batches recompile (docs/benchmarks.md). (Default: off)")
    p.add_argument("--pretrained-model-path", default=None, help="Initialise from this checkpoint (.pth or .ckpt).")
    p.add_argument("--transfer-frontend", action="store_true", help="Load only the frontend from --pretrained-model-path.")
    p.add_argument("--transfer-encoder", action="store_true",
                   help="Load frontend, proj_encoder and encoder from --pretrained-model-path (of an audio-visual "
                        "checkpoint: both frontends, the fusion layer and the encoder).")
    p.add_argument("--transfer-backend", action="store_true",
                   help="Load everything after the frontend (proj_encoder, encoder, decoder, CTC) from "
                        "--pretrained-model-path, which may be a model of another modality (e.g. start a video-only "
                        "model from a trained audio-only one); the frontend starts afresh.")
    p.add_argument("--transfer-ar-scorer", action="store_true",
                   help="A Paraformer with --paraformer-ar-dlayers N: its auxiliary autoregressive decoder starts as "
                        "the decoder of --pretrained-model-path (a --decoder transformer model of the same size: "
                        "--dlayers N, --adim, --dunits); with --transfer-encoder and --freeze-param ... "
                        "decoder.ar_decoder it stays that model's decoder and scores the decoding candidates as that "
                        "model would (--nar-scorer ar; --paraformer-ar-weight 0 skips its unused loss).")
    p.add_argument("--freeze-param", nargs="+", default=None, metavar="PREFIX",
                   help="Keep the parameters named PREFIX or PREFIX.* (state-dict names: frontend, proj_encoder, "
                        "encoder, decoder, ctc, or deeper, e.g. encoder.encoders.0) as initialised, their modules in "
                        "eval mode; e.g. --transfer-encoder --freeze-param frontend proj_encoder encoder trains a new "
                        "decoder and CTC head on another model's encoder. (Default: nothing frozen)")
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
    p.add_argument("--num-threads", type=num_threads_flag, default=0, metavar="N|idle",
                   help="PyTorch threads of a CPU run; 0 = the environment's OMP_NUM_THREADS if set, else all the "
                        "cores this process may use (as PyTorch; DataLoader workers are separate processes). On a "
                        "machine shared with other jobs, fewer threads than cores can be faster; idle = the cores "
                        "other work leaves idle, measured over half a second at the start and again at the start "
                        "of every epoch. (Default: 0)")
    p.add_argument("--media-cache-gb", type=float, default=2.0,
                   help="Decode the clips of --train-file and --val-file once, before training, and keep up to this "
                        "many GiB of them in memory (uint8 frames, float32 audio); 0 = decode every clip in every "
                        "epoch. (Default: 2)")
    p.add_argument("--logger", default="csv", choices=["csv", "tensorboard", "wandb"], help="(Default: csv)")
    p.add_argument("--seed", type=int, default=42, help="Random seed. (Default: 42)")
    p.add_argument("--noise-file", default=None,
                   help="Noise wav (16 kHz) for audio augmentation. (Default: ROOT/babble.wav if present, "
                        "else the built-in procedural babble)")
    p.add_argument("--train-snrs", default="-5,0,5,10,15,20,clean", metavar="DB,...",
                   help="SNRs (dB) at which the babble is added to training audio, one drawn per utterance; "
                        "'clean' = none (only 'clean': no noise augmentation). (Default: -5,0,5,10,15,20,clean, "
                        "as Auto-AVSR)")
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
    if (args.transfer_frontend or args.transfer_encoder or args.transfer_backend or args.transfer_ar_scorer) \
            and not args.pretrained_model_path:
        p.error("--transfer-frontend/--transfer-encoder/--transfer-backend/--transfer-ar-scorer need "
                "--pretrained-model-path")
    if args.transfer_ar_scorer and args.transfer_backend:
        p.error("--transfer-ar-scorer and --transfer-backend both take the checkpoint's decoder: give one")
    if bool(args.init_audio_from) != bool(args.init_video_from):
        p.error("--init-audio-from and --init-video-from go together (an audio-only and a video-only checkpoint)")
    if args.init_audio_from and args.pretrained_model_path:
        p.error("--init-audio-from/--init-video-from and --pretrained-model-path are alternatives; give one")
    try:
        args.train_snrs = parse_snr_levels(args.train_snrs)
    except ValueError as err:
        p.error(str(err))
    if not 0.0 <= args.modality_dropout <= 1.0:
        p.error(f"--modality-dropout must be in [0, 1], got {args.modality_dropout}")
    if args.num_threads != IDLE and args.num_threads < 0:
        p.error(f"--num-threads must be >= 0 (0 = default) or idle, got {args.num_threads}")
    for flag, value in (("--dist-timeout", args.dist_timeout), ("--signal-grace", args.signal_grace)):
        if not value > 0 or value == float("inf"):
            p.error(f"{flag} must be a positive number of seconds, got {value:g}")
    if args.compile:
        from torch._dynamo import list_backends

        backends = list_backends(exclude_tags=())
        if args.compile not in backends:
            p.error(f"--compile: unknown torch.compile backend {args.compile!r} (one of: {', '.join(backends)})")
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


def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.debug else logging.INFO,
                        format="%(asctime)s %(message)s" if args.debug else "%(message)s")
    from espnet.training.cli_errors import run_cli
    from espnet.training.run_lock import run_locked
    from espnet.training.training_run import train

    # one run per run directory at a time (refused with one line; released when the run ends)
    return run_cli(lambda: run_locked(os.path.join(args.exp_dir, args.exp_name), lambda: train(args)),
                   debug=args.debug)
