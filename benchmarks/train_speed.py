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

``--full-size`` measures something else: the training step alone of the full-size Auto-AVSR
models (768-d, 12 Conformer blocks, 6 decoder blocks, ResNet-18 width 64, 5049 tokens), this
project's against the original recipe's, on random data (``--batch-size`` utterances of
``--seconds`` each), forward + backward + gradient clipping + AdamW:

    python benchmarks/train_speed.py --full-size --original-checkout exp/auto_avsr --out exp/full_size

Each model runs in its own process (``benchmarks/step_worker.py``) and the two take turns,
one step each, so that the load of the machine hits both alike; the median of ``--steps``
steps after one warm-up step is reported per model and precision (``--precisions``,
``--baseline-precisions``; within a round every model and precision takes one step), with
the ratio of every pair, 25 Hz frames per second, and the achieved GFLOP/s (the step's floating-point
operations counted by ``torch.utils.flop_counter``) as a share of this machine's peak,
measured in the same run (a large matrix product and a ResNet convolution, the faster of
the two, in float32 and in bfloat16). The original is the ``E2E`` of an Auto-AVSR checkout
given by ``--original-checkout`` (github mpc001/auto_avsr; the checkout's code is run, never
copied here). Without one, this project's code with its speed levers off (attention step by
step, the legacy video layout, PyTorch's default AdamW update: the original computation)
stands in for it, and the output says so; audio-visual models, which the original does not
have, are always compared with that stand-in. ``--sizes`` shrinks every model (tests).

``--device cuda`` runs every model on the GPU (weights, optimiser state and batch there;
``torch.autocast("cuda", bfloat16)`` for bf16-mixed); each step is timed between two
``torch.cuda.synchronize()``, its peak GPU memory (``torch.cuda.max_memory_allocated``, reset
before every step) is reported, and the peak probe runs on the GPU (larger sizes). With
``--compile [BACKEND]`` this project's model is compiled (``inductor`` unless named) and the
compilation time (first step minus the median) is reported. ``benchmarks/gpu_speed.py`` runs
the GPU measurements of issue 25 with this.
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
    from espnet.training.scheduler import build_adamw

    optimizer = build_adamw(model.parameters(), targs.lr, targs.weight_decay)  # as train.py

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


FULL_SIZES = {"odim": 5049, "adim": 768, "aheads": 12, "eunits": 3072, "elayers": 12, "dunits": 3072,
              "dlayers": 6, "width": 64}


def refuse(message: str) -> None:
    """A bad flag: one line on stderr, exit status 2 (as argparse does)."""
    print(f"train_speed.py: error: {message}", file=sys.stderr)
    raise SystemExit(2)


def parse_sizes(text: str) -> Dict[str, int]:
    """``--sizes adim=64,elayers=2,...`` over the full sizes."""
    sizes = dict(FULL_SIZES)
    for item in filter(None, text.split(",")):
        key, _, value = item.partition("=")
        if key not in sizes or not value.isdigit() or int(value) < 1:
            refuse(f"--sizes: {item!r} is not NAME=N with NAME one of {', '.join(FULL_SIZES)}")
        sizes[key] = int(value)
    return sizes


def machine_peak(dtype, repeats: int = 5, device: str = "cpu") -> Dict[str, float]:
    """GFLOP/s of an N^3 matrix product and of a ResNet 3x3 convolution (64 channels, 56x56,
    batch B, forward) in ``dtype`` on ``device``, the median of ``repeats`` runs each: N = 2048,
    B = 8 on the CPU; N = 8192, B = 128 on a GPU (large enough that kernel launches do not
    count), each run ended by ``torch.cuda.synchronize()``."""
    import torch
    import torch.nn.functional as F

    from espnet.utils.timing import median_seconds

    n, b = (8192, 128) if device.startswith("cuda") else (2048, 8)
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    x, y = torch.randn(n, n, dtype=dtype, device=device), torch.randn(n, n, dtype=dtype, device=device)
    image = torch.randn(b, 64, 56, 56, dtype=dtype, device=device)
    kernel = torch.randn(64, 64, 3, 3, dtype=dtype, device=device)
    work = {"matmul": (lambda: (torch.mm(x, y), sync()), 2 * n ** 3),
            "conv": (lambda: (F.conv2d(image, kernel, padding=1), sync()), 2 * b * 64 * 64 * 9 * 56 * 56)}
    return {name: flops / median_seconds(fn, repeats) / 1e9 for name, (fn, flops) in work.items()}


class StepWorker:
    """A ``benchmarks/step_worker.py`` process: one model, one step per request."""

    def __init__(self, spec: Dict, log_path: str) -> None:
        self.name = spec["impl"]
        self.log = open(log_path, "w")
        self.proc = subprocess.Popen([sys.executable, os.path.join(REPO, "benchmarks", "step_worker.py"),
                                      json.dumps(spec)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=self.log, text=True, cwd=REPO,
                                     env=dict(os.environ, HF_HUB_OFFLINE="1"))
        self.info = self._reply()

    def _reply(self) -> Dict:
        line = self.proc.stdout.readline()
        if not line:
            self.proc.wait()
            raise SystemExit(f"step worker {self.name} failed (exit {self.proc.returncode}); see {self.log.name}")
        return json.loads(line)

    def step(self, precision: str) -> Dict:
        self.proc.stdin.write(precision + "\n")
        self.proc.stdin.flush()
        return self._reply()

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.stdin.write("quit\n")
            self.proc.stdin.flush()
            self.proc.wait(timeout=60)
        self.log.close()


def full_size(args) -> int:
    """``--full-size``: this project's training step against the original's, side by side."""
    import statistics

    import torch

    sizes = parse_sizes(args.sizes)
    checkout = os.path.abspath(args.original_checkout) if args.original_checkout else None
    if checkout and not os.path.isfile(os.path.join(checkout, "espnet", "nets", "pytorch_backend",
                                                    "e2e_asr_conformer.py")):
        refuse(f"--original-checkout {args.original_checkout}: no Auto-AVSR checkout there "
                         f"(espnet/nets/pytorch_backend/e2e_asr_conformer.py is missing)")
    if checkout and sizes != FULL_SIZES:
        refuse("--sizes: the original Auto-AVSR model has fixed sizes; leave out --original-checkout "
               "to compare shrunk models with the stand-in")
    precisions = [p for p in args.precisions.split(",") if p]
    base_precisions = [p for p in (args.baseline_precisions or args.precisions).split(",") if p]
    for flag, values in (("--precisions", precisions), ("--baseline-precisions", base_precisions)):
        for precision in values:
            if precision not in ("32", "bf16-mixed"):
                refuse(f"{flag}: {precision!r} is not 32 or bf16-mixed")
    if args.device not in ("cpu", "cuda"):
        refuse(f"--device: {args.device!r} is not cpu or cuda")
    if args.device == "cuda" and not torch.cuda.is_available():
        refuse("--device cuda: no CUDA device (torch.cuda.is_available() is False)")
    if args.steps < 1 or args.batch_size < 1 or args.seconds <= 0 or args.peak_repeats < 1:
        refuse("--steps, --batch-size and --peak-repeats must be >= 1 and --seconds > 0")
    os.makedirs(args.out, exist_ok=True)
    frames = args.batch_size * int(round(25 * args.seconds))
    load_before = os.getloadavg()
    where = device_name(args.device)
    print(f"{args.device}: {where}; torch {torch.__version__}; {torch.get_num_threads()} CPU threads; "
          f"load average before: {' '.join(f'{v:.2f}' for v in load_before)}", flush=True)
    peaks = {"32": machine_peak(torch.float32, args.peak_repeats, args.device),
             "bf16-mixed": machine_peak(torch.bfloat16, args.peak_repeats, args.device)}
    for precision, peak in peaks.items():
        print(f"peak ({precision}): matmul {peak['matmul']:.1f} GFLOP/s, conv {peak['conv']:.1f} GFLOP/s", flush=True)
    if args.device == "cuda":
        torch.cuda.empty_cache()  # the probe's matrices: the GPU memory goes to the workers
    results = {}
    for modality in args.modalities.split(","):
        base_impl = "original" if checkout and modality != "audiovisual" else "standin"
        spec = {"modality": modality, "sizes": sizes, "batch": args.batch_size, "seconds": args.seconds,
                "tokens": args.tokens, "checkout": checkout, "device": args.device}
        workers = []
        try:
            for impl in (base_impl, "ours"):
                workers.append(StepWorker(dict(spec, impl=impl, count_flops=impl == "ours",
                                               compile=impl == "ours" and args.compile),
                                          os.path.join(args.out, f"{modality}_{impl}.log")))
            base, ours = workers
            flops = ours.info["flops"]
            what = ("the original Auto-AVSR (" + checkout + ")" if base_impl == "original" else
                    "this project's code with the speed levers off (stand-in for the original)")
            print(f"[{modality}] baseline: {what}; {base.info['params'] / 1e6:.1f} M vs {ours.info['params'] / 1e6:.1f} M "
                  f"parameters; {flops / 1e9:.1f} GFLOP per step", flush=True)
            # every (model, precision) takes one step per round, in turn, the order reversed every round
            runs = [(base, q) for q in base_precisions] + [(ours, p) for p in precisions]
            first = {(w.name, p): w.step(p) for w, p in runs}  # warm-up (and compilation)
            steps = {(w.name, p): [] for w, p in runs}
            for i in range(args.steps):
                for w, p in runs if i % 2 == 0 else runs[::-1]:
                    steps[(w.name, p)].append(w.step(p))
                    print(f"  [{modality}] round {i + 1}: {w.name} {p} {steps[(w.name, p)][-1]['seconds']:.1f} s",
                          flush=True)
            median = {key: statistics.median(r["seconds"] for r in replies) for key, replies in steps.items()}
            for p in precisions:
                for q in base_precisions:
                    b_s, o_s = median[(base.name, q)], median[("ours", p)]
                    row = {"precision": p, "baseline_precision": q, "baseline": base_impl,
                           "baseline_steps": [r["seconds"] for r in steps[(base.name, q)]],
                           "ours_steps": [r["seconds"] for r in steps[("ours", p)]],
                           "baseline_cpu_seconds": statistics.median(r["cpu_seconds"] for r in steps[(base.name, q)]),
                           "ours_cpu_seconds": statistics.median(r["cpu_seconds"] for r in steps[("ours", p)]),
                           "baseline_first_step": first[(base.name, q)]["seconds"],
                           "ours_first_step": first[("ours", p)]["seconds"],
                           "baseline_seconds": b_s, "ours_seconds": o_s, "speedup": b_s / o_s,
                           "baseline_fps": frames / b_s, "ours_fps": frames / o_s, "gflops_per_step": flops / 1e9,
                           "baseline_gflops": flops / 1e9 / b_s, "ours_gflops": flops / 1e9 / o_s}
                    for side, key in (("baseline", (base.name, q)), ("ours", ("ours", p))):
                        used = [r["peak_bytes"] for r in steps[key] if r.get("peak_bytes") is not None]
                        row[side + "_peak_memory_gb"] = max(used) / 1e9 if used else None
                    row["baseline_peak_share"] = row["baseline_gflops"] / max(peaks[q].values())
                    row["ours_peak_share"] = row["ours_gflops"] / max(peaks[p].values())
                    if args.compile:
                        row["compile_seconds"] = row["ours_first_step"] - o_s
                    results[f"{modality} {p} vs {q}"] = row
                    print(f"[{modality}] ours {p} {o_s:.2f} s/step vs {base_impl} {q} {b_s:.2f} s/step: "
                          f"{row['speedup']:.2f}x; {row['ours_fps']:.1f} vs {row['baseline_fps']:.1f} frames/s; "
                          f"{row['ours_gflops']:.1f} vs {row['baseline_gflops']:.1f} GFLOP/s = "
                          f"{100 * row['ours_peak_share']:.0f} % vs {100 * row['baseline_peak_share']:.0f} % of peak"
                          + (f"; compilation {row['compile_seconds']:.0f} s" if args.compile else "")
                          + (f"; peak GPU memory {row['ours_peak_memory_gb']:.2f} vs "
                             f"{row['baseline_peak_memory_gb']:.2f} GB" if row["ours_peak_memory_gb"] else ""),
                          flush=True)
        finally:
            for w in workers:
                w.close()
    load_after = os.getloadavg()
    head = ("| model | ours | baseline | ours s/step | baseline s/step | speed-up | ours frames/s | baseline frames/s | "
            "ours GFLOP/s (% of peak) | baseline GFLOP/s (% of peak) |")
    if args.device == "cuda":
        head += " ours peak GPU memory (GB) | baseline peak GPU memory (GB) |"
    lines = [head, "|" + " --- |" * (head.count("|") - 1)]
    for key, row in results.items():
        modality = key.split()[0]
        lines.append(f"| {modality} | {row['precision']} | {row['baseline']} {row['baseline_precision']} | "
                     f"{row['ours_seconds']:.2f} | {row['baseline_seconds']:.2f} | "
                     f"{row['speedup']:.2f}x | {row['ours_fps']:.1f} | {row['baseline_fps']:.1f} | "
                     f"{row['ours_gflops']:.1f} ({100 * row['ours_peak_share']:.0f} %) | "
                     f"{row['baseline_gflops']:.1f} ({100 * row['baseline_peak_share']:.0f} %) |"
                     + (f" {row['ours_peak_memory_gb']:.2f} | {row['baseline_peak_memory_gb']:.2f} |"
                        if args.device == "cuda" else ""))
    table = "\n".join(lines)
    print(table)
    print(f"load average after: {' '.join(f'{v:.2f}' for v in load_after)}")
    with open(os.path.join(args.out, "full_size.md"), "w") as handle:
        handle.write(f"Full-size training step, batch {args.batch_size} x {args.seconds:g} s, median of {args.steps} "
                     f"steps ({where}, torch {torch.__version__}, load average {load_before[0]:.2f} before, "
                     f"{load_after[0]:.2f} after)\n\n{table}\n")
    with open(os.path.join(args.out, "full_size.json"), "w") as handle:
        json.dump({"results": results, "peaks": peaks, "sizes": sizes, "args": vars(args),
                   "processor": processor_name(), "device": args.device, "device_name": where,
                   "torch": torch.__version__, "load_average": [load_before, load_after]}, handle, indent=2)
    return 0


def processor_name() -> str:
    """``model name`` of ``/proc/cpuinfo`` and the core count (``unknown`` where absent)."""
    try:
        with open("/proc/cpuinfo") as handle:
            name = next((line.split(":", 1)[1].strip() for line in handle if line.startswith("model name")), "unknown")
    except OSError:
        name = "unknown"
    return f"{name}, {os.cpu_count()} cores"


def device_name(device: str) -> str:
    """The GPU's name (``torch.cuda.get_device_name``) for ``cuda``, else the processor's."""
    import torch

    return torch.cuda.get_device_name(0) if device == "cuda" else processor_name()


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
    p.add_argument("--full-size", action="store_true",
                   help="Time the full-size training step alone against the original's, side by side (above).")
    p.add_argument("--original-checkout", default=None,
                   help="--full-size: an Auto-AVSR checkout (github mpc001/auto_avsr) whose E2E is the baseline. "
                        "(Default: none: this project's code with its speed levers off stands in for it)")
    p.add_argument("--precisions", default="32,bf16-mixed",
                   help="--full-size: comma-separated precisions (32, bf16-mixed). (Default: 32,bf16-mixed)")
    p.add_argument("--baseline-precisions", default=None,
                   help="--full-size: the baseline's precisions, if not those of --precisions (e.g. 32: the original "
                        "recipe trains in float32); every pair is compared. (Default: --precisions)")
    p.add_argument("--steps", type=int, default=4, help="--full-size: timed steps per model. (Default: 4)")
    p.add_argument("--batch-size", type=int, default=2, help="--full-size: utterances per batch. (Default: 2)")
    p.add_argument("--seconds", type=float, default=2.0, help="--full-size: seconds per utterance. (Default: 2)")
    p.add_argument("--tokens", type=int, default=16, help="--full-size: label length in tokens. (Default: 16)")
    p.add_argument("--sizes", default="", help="--full-size: NAME=N,... over the full sizes "
                   f"({', '.join(f'{k}={v}' for k, v in FULL_SIZES.items())}), e.g. for a quick test.")
    p.add_argument("--compile", nargs="?", const="inductor", default=None, metavar="BACKEND",
                   help="--full-size: torch.compile this project's model, with BACKEND (default inductor; eager "
                        "tests the code path quickly); the compilation time is reported.")
    p.add_argument("--device", default="cpu", help="--full-size: cpu or cuda (every model, its optimiser state "
                   "and the batch on the GPU; step times between torch.cuda.synchronize(), peak GPU memory "
                   "reported). (Default: cpu)")
    p.add_argument("--peak-repeats", type=int, default=5,
                   help="--full-size: timed runs of each peak probe (matrix product, convolution). (Default: 5)")
    args = p.parse_args(argv)
    if args.full_size:
        if args.modalities == "audio,video,audiovisual":
            args.modalities = "video,audio,audiovisual"
        return full_size(args)
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
