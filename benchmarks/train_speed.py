"""Where CPU training time goes: data loading alone, the training step alone and whole epochs,
side by side, for audio-only, video-only and audio-visual models.

    python benchmarks/train_speed.py --out exp/train_speed
    python benchmarks/train_speed.py --out exp/train_speed --baseline-repo /tmp/base   # + an older checkout

For each model (the quickstart/benchmark sizes by default: adim 96, 2 Conformer blocks,
ResNet width 16, batches of at most 300 frames), in 25 Hz input frames per second:

* **data loading alone**: one pass over the training loader exactly as ``train.py`` builds
  it (``DataModule``: media cache, workers, augmentation, bucketing, padding), no model;
* **step alone**: forward, backward, gradient clipping and the AdamW update of the same model
  on batches already in memory (the same batches: no loading at all), at the precision
  ``train.py`` chooses for ``--flags`` (``--precision auto``: bf16-mixed on a CPU with native
  bf16, else 32); ``--step-precisions 32,bf16-mixed`` also times it at the other one;
* **epoch**: ``train.py`` itself (through ``benchmarks/epoch_timer.py``), training frames
  over the wall time of each epoch's training batches, data loading included; the last
  epoch is reported (the first one of a fresh process also pays for warming up);
* with ``--baseline-repo DIR``: the same ``train.py`` run from another checkout (e.g. the
  commit before the speed-ups, as a git worktree) on the same corpus, with
  ``--baseline-flags`` (its defaults by default), and the speed-up of this checkout.

Data loading is not the bottleneck when ``epoch >= 0.85 x step alone`` (printed as
"epoch / step"). Each throughput is also given per second of CPU time of the training
process: on a machine shared with other jobs the wall time of measurements taken one after
the other moves with the load (here by up to 2x between minutes), the CPU time much less;
with ``--num-workers 0`` (the default here) loading runs in the training process, so its CPU
time counts it. The corpus is generated like the quickstart's (300 utterances, 12 speakers)
unless ``--root-dir`` points at one. Results go to ``OUT/train_speed.md`` and ``.json``.
On a shared machine run everything from one invocation: absolute numbers move with the
load, the ratios measured side by side much less.
"""

import argparse
import contextlib
import json
import os
import shlex
import subprocess
import sys
import time
from typing import Dict, List, Optional, Tuple

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

MODELS = {
    "audio": ["--audio-encoder", "resnet1d"],
    "video": ["--vision-encoder", "resnet"],
    "audiovisual": ["--vision-encoder", "resnet", "--audio-encoder", "resnet1d", "--fusion-type", "gated"],
}
BASELINE_FLAGS = "--num-workers 1"  # what the quickstart passed before the speed-ups


def model_flags(args, modality: str) -> List[str]:
    """``train.py`` model and optimisation flags shared by every measurement."""
    return [*MODELS[modality], "--adim", str(args.adim), "--aheads", "4", "--eunits", str(4 * args.adim),
            "--elayers", str(args.elayers), "--dunits", str(4 * args.adim), "--dlayers", "1",
            "--resnet-width", str(args.resnet_width), "--max-frames", str(args.max_frames),
            "--ctc-weight", "0.3", "--lr", "2e-3", "--warmup-epochs", "1", "--seed", "0"]


def corpus(args) -> Dict[str, str]:
    if args.root_dir:
        root = args.root_dir
        spm = os.path.join(root, "spm")
        model = next(f for f in sorted(os.listdir(spm)) if f.endswith(".model"))
        return {"root": root, "sp_model_path": os.path.join(spm, model),
                "dict_path": os.path.join(spm, model[: -len(".model")] + "_units.txt")}
    root = os.path.join(args.out, "data")
    if not os.path.isfile(os.path.join(root, "labels", "train.csv")):
        from preparation.synthetic_av import generate

        generate(root, num_utts=args.num_utts, num_speakers=args.num_speakers, seed=0, progress=False)
    return corpus(argparse.Namespace(root_dir=root))


def train_args(args, data: Dict[str, str], modality: str, run_dir: str, extra: List[str]) -> List[str]:
    return ["--exp-dir", os.path.dirname(run_dir), "--exp-name", os.path.basename(run_dir),
            "--root-dir", data["root"], "--train-file", "train.csv",
            "--sp-model-path", data["sp_model_path"], "--dict-path", data["dict_path"],
            *model_flags(args, modality), "--max-epochs", str(args.epochs), "--average-last", "0",
            "--accelerator", "cpu", *extra]


def timed_epochs(repo: str, flags: List[str], out_json: str, log_path: str) -> List[Dict[str, float]]:
    """Run ``repo/train.py flags`` under the epoch timer; the per-epoch records."""
    cmd = [sys.executable, os.path.join(REPO, "benchmarks", "epoch_timer.py"), out_json,
           os.path.join(repo, "train.py"), *flags]
    with open(log_path, "w") as log:
        log.write(" ".join(shlex.quote(c) for c in cmd) + "\n")
        log.flush()
        proc = subprocess.run(cmd, cwd=repo, stdout=log, stderr=subprocess.STDOUT,
                              env=dict(os.environ, PYTHONPATH=repo, HF_HUB_OFFLINE="1"))
    if proc.returncode != 0:
        raise SystemExit(f"training failed ({repo}); see {log_path}")
    with open(out_json) as handle:
        return json.load(handle)["epochs"]


def reported_threads(log_path: str) -> Optional[int]:
    """The ``CPU threads: N`` that train.py printed (``None`` for a checkout that does not)."""
    with open(log_path, errors="replace") as handle:
        for line in handle:
            if line.startswith("CPU threads: "):
                return int(line.split()[2])
    return None


def measure_in_process(args, data: Dict[str, str], modality: str) -> Dict[str, float]:
    """Data loading alone and the training step alone (this checkout, this process)."""
    import torch

    from datamodule.data_module import DataModule
    from espnet.training.throughput import batch_frames
    from espnet.training.model_module import ModelModule
    from espnet.training.train_cli import parse_args
    from espnet.training.training_run import resolve_run_precision

    argv = train_args(args, data, modality, os.path.join(args.out, "unused"), args.flags.split())
    targs = parse_args(argv)
    from espnet.training.cli_args import load_tokenizer, resolve_model_config

    tokenizer = load_tokenizer(targs.sp_model_path, targs.dict_path)
    config = resolve_model_config(targs, tokenizer.odim)
    config.ctc_weight = targs.ctc_weight
    torch.manual_seed(0)
    module = ModelModule({"model_config": config.to_dict(), "lr": targs.lr, "weight_decay": targs.weight_decay,
                          "warmup_epochs": 1, "max_epochs": 1, "seed": 0}, text_transform=tokenizer)
    dm = DataModule(targs.root_dir, targs.train_file, None, config.modality, max_frames=targs.max_frames,
                    train_num_buckets=targs.train_num_buckets, num_workers=targs.num_workers, seed=0,
                    audio_utterance_norm=module.model.audio_utterance_norm, media_cache_gb=targs.media_cache_gb)
    start = time.perf_counter()
    loader = dm.train_dataloader()
    fill_seconds = time.perf_counter() - start
    batches, frames = [], 0.0
    start, cpu = time.perf_counter(), time.process_time()
    for batch in loader:
        batches.append(batch)
        frames += batch_frames(batch)
    load_seconds, load_cpu = time.perf_counter() - start, time.process_time() - cpu
    batches = batches[: args.step_batches] if args.step_batches else batches
    step_frames = sum(batch_frames(b) for b in batches)
    model = module.model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=targs.lr, betas=(0.9, 0.98), weight_decay=targs.weight_decay)

    def step(batch, bf16: bool) -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext():
            loss = module.forward_batch(batch)[0]
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 10.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    def timed_steps(bf16: bool) -> Tuple[float, float]:
        step(batches[0], bf16)  # warm-up (allocations, kernel selection)
        start, cpu = time.perf_counter(), time.process_time()
        for batch in batches:
            step(batch, bf16)
        return time.perf_counter() - start, time.process_time() - cpu

    # the step alone at the precision train.py will use (--precision of --flags, auto resolved)
    run_precision = resolve_run_precision(targs, log=lambda line: None)
    row = {"load_fps": frames / load_seconds, "load_cpu_fps": frames / load_cpu, "cache_fill_seconds": fill_seconds,
           "epoch_frames": frames, "precision": run_precision}
    for precision in [run_precision] + [p for p in args.step_precisions.split(",") if p and p != run_precision]:
        if precision not in ("32", "bf16-mixed"):
            raise ValueError(f"--step-precisions: {precision!r} is not 32 or bf16-mixed")
        step_seconds, step_cpu = timed_steps(precision == "bf16-mixed")
        suffix = "" if precision == run_precision else f"_{precision}"
        row["step_fps" + suffix], row["step_cpu_fps" + suffix] = step_frames / step_seconds, step_frames / step_cpu
    return row


def main(argv: Optional[List[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="exp/train_speed", help="Output folder. (Default: exp/train_speed)")
    p.add_argument("--root-dir", default=None, help="An existing corpus (labels/train.csv, spm/). "
                   "(Default: generate one in OUT/data)")
    p.add_argument("--num-utts", type=int, default=300, help="Generated corpus size. (Default: 300, the quickstart's)")
    p.add_argument("--num-speakers", type=int, default=12, help="Generated corpus speakers. (Default: 12)")
    p.add_argument("--modalities", default="audio,video,audiovisual", help="Comma-separated models to measure.")
    p.add_argument("--adim", type=int, default=96)
    p.add_argument("--elayers", type=int, default=2)
    p.add_argument("--resnet-width", type=int, default=16)
    p.add_argument("--max-frames", type=int, default=300)
    p.add_argument("--epochs", type=int, default=2, help="train.py epochs per run; the last is reported. (Default: 2)")
    p.add_argument("--step-batches", type=int, default=0,
                   help="Batches for the step-alone measurement (0 = all of an epoch). (Default: 0)")
    p.add_argument("--step-precisions", default="",
                   help="Also time the step alone at these precisions (comma-separated: 32, bf16-mixed), beside the "
                        "one of --flags (default auto: bf16-mixed on a CPU with native bf16, else 32); each extra "
                        "one is reported as step_fps_P, step_cpu_fps_P and its ratio. (Default: none)")
    p.add_argument("--flags", default="--num-workers 0",
                   help="Extra train.py flags of this checkout (threads, cache, workers). (Default: --num-workers 0)")
    p.add_argument("--baseline-repo", default=None, help="Another checkout to time the same way (its train.py).")
    p.add_argument("--baseline-flags", default=BASELINE_FLAGS,
                   help=f"Extra train.py flags of the baseline. (Default: {BASELINE_FLAGS})")
    args = p.parse_args(argv)
    # the baseline's train.py runs in its own checkout: every path it is given must be absolute
    args.out = os.path.abspath(args.out)
    args.root_dir = os.path.abspath(args.root_dir) if args.root_dir else None
    os.makedirs(args.out, exist_ok=True)
    data = corpus(args)
    from espnet.training.cpu_threads import apply_num_threads
    from espnet.training.train_cli import parse_args

    probe = parse_args(train_args(args, data, "audio", os.path.join(args.out, "unused"), args.flags.split()))
    apply_num_threads(probe.num_threads)  # as train.py will (same flags and environment, same choice)

    results: Dict[str, Dict[str, float]] = {}
    for modality in args.modalities.split(","):
        row = measure_in_process(args, data, modality)
        runs = [("epoch", REPO, args.flags)]
        if args.baseline_repo:
            runs.append(("baseline_epoch", os.path.abspath(args.baseline_repo), args.baseline_flags))
        for key, repo, flags in runs:
            run_dir = os.path.join(os.path.abspath(args.out), f"{modality}_{key}")
            epochs = timed_epochs(repo, train_args(args, data, modality, run_dir, flags.split()),
                                  run_dir + ".json", run_dir + ".log")
            row[key + "_fps"] = epochs[-1]["frames"] / epochs[-1]["seconds"]
            row[key + "_cpu_fps"] = epochs[-1]["frames"] / epochs[-1]["cpu_seconds"]
            row[key + "_all"] = epochs
            row[key + "_threads"] = reported_threads(run_dir + ".log")
        row["epoch_over_step"] = row["epoch_fps"] / row["step_fps"]
        row["epoch_over_step_cpu"] = row["epoch_cpu_fps"] / row["step_cpu_fps"]
        if args.baseline_repo:
            row["speedup"] = row["epoch_fps"] / row["baseline_epoch_fps"]
        results[modality] = row
        print(f"[{modality}] " + ", ".join(f"{k} {v:.2f}" for k, v in row.items() if isinstance(v, float)),
              flush=True)

    head = ("| model | data loading alone | step alone | epoch | epoch / step | step alone, CPU time | "
            "epoch, CPU time | epoch / step, CPU time |")
    if args.baseline_repo:
        head += " baseline epoch | speed-up |"
    lines = [head, "|" + " --- |" * (head.count("|") - 1)]
    for modality, row in results.items():
        line = (f"| {modality} | {row['load_fps']:.0f} | {row['step_fps']:.0f} | {row['epoch_fps']:.0f} | "
                f"{row['epoch_over_step']:.2f} | {row['step_cpu_fps']:.0f} | {row['epoch_cpu_fps']:.0f} | "
                f"{row['epoch_over_step_cpu']:.2f} |")
        if args.baseline_repo:
            line += f" {row['baseline_epoch_fps']:.0f} | {row['speedup']:.2f}x |"
        lines.append(line)
    table = "\n".join(lines)
    with open(os.path.join(args.out, "train_speed.md"), "w") as handle:
        precisions = ", ".join(f"{m} {r['precision']}" for m, r in results.items())
        handle.write(f"Training throughput, 25 Hz input frames per second (precision: {precisions})\n\n"
                     + table + "\n")
    with open(os.path.join(args.out, "train_speed.json"), "w") as handle:
        json.dump({"results": results, "args": vars(args), "load_average": os.getloadavg()}, handle, indent=2)
    print(table)
    for modality, row in results.items():
        for key in [k for k in row if k.startswith("step_cpu_fps_")]:
            other = key[len("step_cpu_fps_"):]
            cpu_ratio, wall_ratio = row["step_cpu_fps"] / row[key], row["step_fps"] / row["step_fps_" + other]
            print(f"[{modality}] step alone at {row['precision']} vs {other}: frames/s ratio {cpu_ratio:.2f} in "
                  f"CPU time, {wall_ratio:.2f} in wall time")
    for key, what in (("epoch_over_step", "wall time"), ("epoch_over_step_cpu", "CPU time")):
        below = [m for m, r in results.items() if r[key] < 0.85]
        print(f"epoch < 0.85 x step alone ({what}) for: {', '.join(below)}" if below
              else f"epoch >= 0.85 x step alone ({what}) for every model")
    return 0


if __name__ == "__main__":
    sys.exit(main())
