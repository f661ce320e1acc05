"""The GPU measurements of issue 25 in one short run: the full-size training step and batched
decoding on one CUDA device, written to one markdown table and one JSON file.

    python benchmarks/gpu_speed.py --out exp/gpu_speed

It runs, one after the other, each as its own process with a time limit (``--stage-timeout``,
and what is left of ``--time-budget`` for the whole run), writing the report again after
every stage (a stage that fails, runs out of time or finds the budget spent is marked so, and
the others still run; the exit status is then 1). ``--stages`` picks some of them (e.g.
``compile`` alone, with another ``--out``, to rerun what a first run had no time for):

1. ``train VIDEO/AUDIO``: ``benchmarks/train_speed.py --full-size --device cuda`` for each of
   ``--modalities``: this project's full-size model (768-d, 12 Conformer blocks, 6 decoder
   blocks, ResNet-18 width 64, 5049 tokens; what ``--full-size`` builds for ``ours``) at
   float32 and bf16-mixed (``torch.autocast("cuda", bfloat16)``), beside the stand-in for the
   original (float32), ``--batch-size`` utterances of ``--seconds`` each, the median of
   ``--steps`` steps after a warm-up step: 25 Hz frames per second and the peak GPU memory
   (``torch.cuda.max_memory_allocated``, reset before every step);
2. ``decode``: ``benchmarks/eval_speed.py --device cuda`` with the full-size legacy video model:
   utterances per second at beam ``--beam``, one utterance at a time against
   ``--decode-batch`` at once, the hypotheses checked to be identical (it exits otherwise);
3. ``compile VIDEO/AUDIO``: step 1 at bf16-mixed with this project's model under
   ``torch.compile`` (inductor; beside the float32 stand-in again); the compilation time
   (first step minus the median) apart.

Results: ``OUT/gpu_speed.md`` and ``OUT/gpu_speed.json`` (the GPU's name, the torch and CUDA
versions, every stage's status), each stage's own output and log under ``OUT/``. Without a
CUDA device it refuses (exit status 2) unless ``--device cpu --tiny`` is given: tiny models,
one step, the eager compile backend, a few short utterances, on the CPU: every code path of
the script, for testing it without a GPU (its numbers measure nothing).
"""

import argparse
import json
import os
import platform
import signal
import subprocess
import sys
import time
from typing import Dict, List, Optional

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

TINY_SIZES = "odim=20,adim=16,aheads=2,eunits=32,elayers=1,dunits=32,dlayers=1,width=4"
CONFIGS = {"32": "float32", "bf16-mixed": "bf16-mixed"}
STAGES = ("train", "decode", "compile")
MIN_STAGE_SECONDS = 20.0


def refuse(message: str) -> None:
    """A bad flag or a missing GPU: one line on stderr, exit status 2."""
    print(f"gpu_speed.py: error: {message}", file=sys.stderr)
    raise SystemExit(2)


def stages(args) -> List[Dict]:
    """The stages to run: name, kind, command and the folder its results go to."""
    train_speed, eval_speed = (os.path.join(REPO, "benchmarks", name) for name in ("train_speed.py", "eval_speed.py"))
    step = ["--full-size", "--device", args.device, "--batch-size", str(args.batch_size),
            "--seconds", str(args.seconds), "--steps", str(args.steps), "--tokens", str(args.tokens)]
    if args.tiny:
        step += ["--sizes", TINY_SIZES, "--peak-repeats", "1"]
    decode = ["--device", args.device, "--modality", "video", "--beams", str(args.beam),
              "--batch-size", str(args.decode_batch), "--num-utts", str(args.num_utts)]
    if args.tiny:
        decode += ["--tiny", "--min-seconds", "0.2", "--max-seconds", "0.4"]
    out: List[Dict] = []
    for modality in args.modalities if "train" in args.stages else []:
        folder = os.path.join(args.out, f"train_{modality}")
        out.append({"name": f"train {modality}", "kind": "train", "folder": folder,
                    "cmd": [train_speed, *step, "--modalities", modality, "--out", folder,
                            "--precisions", "32,bf16-mixed", "--baseline-precisions", "32"]})
    if "decode" in args.stages:
        folder = os.path.join(args.out, "decode")
        out.append({"name": "decode", "kind": "decode", "folder": folder,
                    "cmd": [eval_speed, *decode, "--json", os.path.join(folder, "eval_speed.json")]})
    if "compile" in args.stages:
        for modality in args.modalities:
            folder = os.path.join(args.out, f"compile_{modality}")
            out.append({"name": f"compile {modality}", "kind": "compile", "folder": folder,
                        "cmd": [train_speed, *step, "--modalities", modality, "--out", folder,
                                "--precisions", "bf16-mixed", "--baseline-precisions", "32",
                                "--compile", "eager" if args.tiny else "inductor"]})
    return out


def run_stage(stage: Dict, timeout: float) -> Dict:
    """Run one stage's command (its output to ``FOLDER.log``); its status and wall seconds."""
    os.makedirs(stage["folder"], exist_ok=True)
    log_path = stage["folder"] + ".log"
    start = time.perf_counter()
    with open(log_path, "w") as log:
        log.write(" ".join(stage["cmd"]) + "\n")
        log.flush()
        # its own process group: a stage out of time is stopped with its step workers
        proc = subprocess.Popen([sys.executable, *stage["cmd"]], stdout=log, stderr=subprocess.STDOUT, cwd=REPO,
                                env=dict(os.environ, PYTHONPATH=REPO, HF_HUB_OFFLINE="1"), start_new_session=True)
        try:
            code = proc.wait(timeout=timeout)
            status = "ok" if code == 0 else f"failed (exit status {code})"
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            status = f"timed out after {timeout:.0f} s"
    return {"status": status, "seconds": time.perf_counter() - start, "log": log_path}


def train_rows(stage: Dict) -> List[Dict]:
    """The rows of a finished ``train``/``compile`` stage (``full_size.json`` of train_speed.py)."""
    with open(os.path.join(stage["folder"], "full_size.json")) as handle:
        report = json.load(handle)
    rows = []
    for key, r in report["results"].items():
        compiled = stage["kind"] == "compile"
        rows.append({
            "modality": key.split()[0], "precision": r["precision"], "compiled": compiled,
            "config": CONFIGS[r["precision"]] + (" + torch.compile" if compiled else ""),
            "seconds_per_step": r["ours_seconds"], "steps": r["ours_steps"], "frames_per_second": r["ours_fps"],
            "peak_memory_gb": r.get("ours_peak_memory_gb"), "compile_seconds": r.get("compile_seconds"),
            "first_step_seconds": r["ours_first_step"], "gflops_per_step": r["gflops_per_step"],
            "gflops_per_second": r["ours_gflops"], "peak_share": r["ours_peak_share"],
            "standin_precision": r["baseline_precision"], "standin_seconds_per_step": r["baseline_seconds"],
            "speedup_over_standin": r["speedup"], "standin_peak_memory_gb": r.get("baseline_peak_memory_gb"),
            "batch": report["args"]["batch_size"], "seconds": report["args"]["seconds"]})
    return rows


def number(value: Optional[float], fmt: str) -> str:
    return "n/a" if value is None else format(value, fmt)


def write_report(args, header: Dict, results: Dict) -> None:
    """``OUT/gpu_speed.md`` and ``.json`` from the stages run so far."""
    from espnet.utils.atomic_write import atomic_json_dump, atomic_open

    lines = [f"# GPU speed: {header['device_name']}", "",
             f"torch {header['torch']}, CUDA {header['cuda']}, device `{args.device}`"
             + (" (--tiny: tiny models on the CPU, a test of the script; these numbers measure nothing)"
                if args.tiny else ""), "",
             f"## Training step (batch {args.batch_size} x {args.seconds:g} s, median of {args.steps} steps "
             "after a warm-up step)", "",
             "| model | config | s/step | 25 Hz frames/s | peak GPU memory (GB) | compilation (s) | GFLOP/s "
             "(% of peak) | stand-in s/step | vs stand-in |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for row in results["train"]:
        lines.append(f"| {row['modality']} | {row['config']} | {row['seconds_per_step']:.3f} | "
                     f"{row['frames_per_second']:.1f} | {number(row['peak_memory_gb'], '.2f')} | "
                     f"{number(row['compile_seconds'], '.1f')} | {row['gflops_per_second']:.1f} "
                     f"({100 * row['peak_share']:.0f} %) | {row['standin_seconds_per_step']:.3f} "
                     f"({CONFIGS[row['standin_precision']]}) | {row['speedup_over_standin']:.2f}x |")
    if not results["train"]:
        lines[-2:] = ["(not measured)"]
    decode = results.get("decode")
    lines += ["", f"## Decoding ({'tiny' if args.tiny else 'full-size'} legacy video model, beam {args.beam}, "
              f"{args.num_utts} utterances, 1 at a time vs {args.decode_batch} together)", ""]
    if decode:
        lines += ["| beam | batch | utt/s | RTF | speed-up | hypotheses |", "| --- | --- | --- | --- | --- | --- |"]
        for row in decode["rows"]:
            same = f"identical (max score difference {row['max_score_difference']:.1e})"
            lines.append(f"| {row['beam']} | {row['batch']} | {row['utt_per_s']:.3f} | {row['rtf']:.4f} | "
                         f"{row['speedup']:.2f}x | {same if row['batch'] > 1 else ''} |")
    else:
        lines.append("(not measured)")
    lines += ["", "## Stages", "", "| stage | status | wall s | log |", "| --- | --- | --- | --- |"]
    lines += [f"| {name} | {s['status']} | {s['seconds']:.1f} | "
              f"{os.path.relpath(s['log'], args.out) if s['log'] else ''} |"
              for name, s in results["stages"].items()]
    with atomic_open(os.path.join(args.out, "gpu_speed.md"), "w") as handle:
        handle.write("\n".join(lines) + "\n")
    atomic_json_dump(dict(header, args=vars(args), **results), os.path.join(args.out, "gpu_speed.json"))


def main(argv: Optional[List[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="exp/gpu_speed", help="Output folder. (Default: exp/gpu_speed)")
    p.add_argument("--device", default="cuda", choices=["cuda", "cpu"],
                   help="cuda, or cpu with --tiny (a test of the script). (Default: cuda)")
    p.add_argument("--tiny", action="store_true", help="Tiny models, one step, eager compile: tests the script.")
    p.add_argument("--modalities", default="video,audio", help="Training-step models. (Default: video,audio)")
    p.add_argument("--batch-size", type=int, default=8, help="Training utterances per batch. (Default: 8)")
    p.add_argument("--seconds", type=float, default=4.0, help="Seconds per training utterance. (Default: 4)")
    p.add_argument("--steps", type=int, default=10, help="Timed training steps per config. (Default: 10)")
    p.add_argument("--tokens", type=int, default=32, help="Label length in tokens. (Default: 32)")
    p.add_argument("--beam", type=int, default=40, help="Decoding beam. (Default: 40)")
    p.add_argument("--decode-batch", type=int, default=8, help="Utterances decoded together. (Default: 8)")
    p.add_argument("--num-utts", type=int, default=16, help="Utterances decoded. (Default: 16)")
    p.add_argument("--stages", default="train,decode,compile",
                   help="Comma-separated stages to run, in this order: train, decode, compile. "
                        "(Default: train,decode,compile)")
    p.add_argument("--stage-timeout", type=float, default=300.0,
                   help="Seconds each stage may run before it is stopped and marked so. (Default: 300)")
    p.add_argument("--time-budget", type=float, default=450.0,
                   help="Seconds for the whole run: a stage gets at most what is left, and none starts with "
                        f"less than {MIN_STAGE_SECONDS:g} s left. (Default: 450)")
    args = p.parse_args(argv)
    args.modalities = [m for m in args.modalities.split(",") if m]
    args.stages = [s for s in args.stages.split(",") if s]
    for stage in args.stages:
        if stage not in STAGES:
            refuse(f"--stages: {stage!r} is not one of {', '.join(STAGES)}")
    if not args.stages or not args.modalities:
        refuse("--stages and --modalities must name at least one")
    for modality in args.modalities:
        if modality not in ("video", "audio", "audiovisual"):
            refuse(f"--modalities: {modality!r} is not video, audio or audiovisual")
    if min(args.batch_size, args.steps, args.tokens, args.beam, args.decode_batch, args.num_utts) < 1 \
            or args.seconds <= 0 or args.stage_timeout <= 0 or args.time_budget <= 0:
        refuse("--batch-size, --steps, --tokens, --beam, --decode-batch and --num-utts must be >= 1, "
               "--seconds, --stage-timeout and --time-budget > 0")
    if args.device == "cpu" and not args.tiny:
        refuse("--device cpu: only with --tiny (a test of the script); the full-size CPU step is "
               "benchmarks/train_speed.py --full-size")
    if args.tiny:  # a test of every code path, not a measurement
        args.steps, args.batch_size, args.seconds, args.tokens, args.num_utts = 1, 2, 0.2, 2, 2
        args.decode_batch = min(args.decode_batch, 2)

    import torch

    if args.device == "cuda" and not torch.cuda.is_available():
        refuse("no CUDA device (torch.cuda.is_available() is False); --device cpu --tiny tests the script "
               "without one")
    os.makedirs(args.out, exist_ok=True)
    header = {"device": args.device, "torch": torch.__version__, "cuda": torch.version.cuda,
              "device_name": torch.cuda.get_device_name(0) if args.device == "cuda"
              else f"{platform.processor() or platform.machine()} CPU, {os.cpu_count()} cores",
              "float32_matmul_precision": torch.get_float32_matmul_precision()}
    print(f"{header['device_name']}; torch {header['torch']}, CUDA {header['cuda']}", flush=True)
    results: Dict = {"train": [], "decode": None, "stages": {}}
    failed = False
    deadline = time.perf_counter() + args.time_budget
    for stage in stages(args):
        left = deadline - time.perf_counter()
        if left < MIN_STAGE_SECONDS:
            outcome = {"status": f"skipped: {left:.0f} s of --time-budget left", "seconds": 0.0, "log": None}
        else:
            print(f"[{stage['name']}] running (log: {stage['folder']}.log)", flush=True)
            outcome = run_stage(stage, min(args.stage_timeout, left))
        if outcome["status"] == "ok":
            if stage["kind"] == "decode":
                with open(os.path.join(stage["folder"], "eval_speed.json")) as handle:
                    results["decode"] = json.load(handle)
            else:
                results["train"].extend(train_rows(stage))
        else:
            failed = True
        results["stages"][stage["name"]] = outcome
        print(f"[{stage['name']}] {outcome['status']} ({outcome['seconds']:.1f} s)", flush=True)
        write_report(args, header, results)
    with open(os.path.join(args.out, "gpu_speed.md")) as handle:
        print(handle.read())
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
