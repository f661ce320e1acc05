"""Test WER against babble SNR for audio-only, video-only and audio-visual models trained on
the generated corpus (test speakers unseen in training), and the audio-visual model with
either stream missing.

    python benchmarks/synthetic_wer.py --out exp/synthetic_wer

1. generates the corpus (``preparation.synthetic_av``; reused when ``OUT/data`` has one);
2. trains the audio-only model, then the video-only model starting from the audio model's
   back-end (``train.py --pretrained-model-path A --transfer-backend``: its projection,
   Conformer, decoder and CTC; the lip frontend afresh). A video model trained from scratch
   on this corpus does not get past the grammar (its token accuracy stays at what the
   sentence grammar alone gives); against a back-end that already reads speech features the
   frontend learns within an epoch. ``--video-from-scratch`` trains it from scratch instead,
   at the same time as the audio model with ``--parallel``. Each training process gets the
   cores shared among the processes running at once;
3. trains the audio-visual model (gated fusion by default), initialised from those two
   (``train.py --init-audio-from --init-video-from``: both frontends from their models, the
   Conformer, decoder and CTC from the audio model) with ``--modality-dropout``;
4. decodes the test split clean and at each SNR (babble from the corpus's own
   ``babble.wav``, reproducible per utterance): audio-only, video-only, audio-visual, the
   audio-visual model without its video (``eval.py --drop-stream video``) and without its
   audio (``--drop-stream audio``). Noise is added to audio only, so a model without audio is
   decoded once.

Writes ``OUT/results.md`` (the WER table, the targets and the time each step took),
``OUT/results.json`` and ``OUT/wer_vs_snr.png``. Existing checkpoints and decoding results in
OUT are reused (delete ``OUT/<model>`` to retrain); the times then cover only what ran.
"""

import argparse
import json
import os
import subprocess
import sys
import time
from typing import Dict, List, Optional, Tuple

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

AUDIO, VIDEO, AV = "audio-only", "video-only", "audio-visual"
NO_VIDEO, NO_AUDIO = "audio-visual, video dropped", "audio-visual, audio dropped"
ENCODERS = {AUDIO: ["--audio-encoder", "resnet1d"], VIDEO: ["--vision-encoder", "resnet"],
            AV: ["--vision-encoder", "resnet", "--audio-encoder", "resnet1d"]}
RUN_DIRS = {AUDIO: "audio", VIDEO: "video_from_audio", AV: "audiovisual"}
SCRATCH_VIDEO_DIR = "video"  # --video-from-scratch
# table rows: (row, model, --drop-stream)
ROWS = [(AUDIO, AUDIO, None), (VIDEO, VIDEO, None), (AV, AV, None), (NO_VIDEO, AV, "video"), (NO_AUDIO, AV, "audio")]


def cpu_seconds() -> float:
    """CPU time of this process and of its finished children (the training runs)."""
    import resource

    return sum(r.ru_utime + r.ru_stime for r in (resource.getrusage(resource.RUSAGE_SELF),
                                                    resource.getrusage(resource.RUSAGE_CHILDREN)))


def parse_snrs(text: str) -> List[Optional[float]]:
    out: List[Optional[float]] = []
    for part in text.split(","):
        part = part.strip()
        out.append(None if part == "clean" else float(part))
    return out


def snr_label(snr: Optional[float]) -> str:
    return "clean" if snr is None else f"{snr:g} dB"


def averaged_model(run_dir: str) -> Optional[str]:
    found = sorted(f for f in os.listdir(run_dir) if f.startswith("model_avg_") and f.endswith(".pth")) \
        if os.path.isdir(run_dir) else []
    return os.path.join(run_dir, found[0]) if found else None


def train_command(name: str, args, data: Dict[str, str], run_dir: str, extra: List[str], threads: int) -> List[str]:
    epochs = {AUDIO: args.epochs_audio, VIDEO: args.epochs_video, AV: args.epochs_av}[name]
    lr = {AUDIO: args.lr_audio, VIDEO: args.lr_video, AV: args.lr_av}[name]
    from_trained = any(flag in extra for flag in ("--pretrained-model-path", "--init-audio-from"))
    warmup = args.warmup_epochs_init if from_trained else args.warmup_epochs
    fusion = ["--fusion-type", args.fusion] if name == AV else []
    return [sys.executable, os.path.join(REPO, "train.py"), "--exp-dir", os.path.dirname(run_dir),
            "--exp-name", os.path.basename(run_dir), *ENCODERS[name], *fusion, "--decoder", "transformer",
            "--root-dir", data["root"], "--train-file", "train.csv", "--val-file", "val.csv",
            "--sp-model-path", data["sp_model_path"], "--dict-path", data["dict_path"],
            "--adim", str(args.adim), "--aheads", "4", "--eunits", str(4 * args.adim), "--elayers", str(args.elayers),
            "--dunits", str(4 * args.adim), "--dlayers", "1", "--resnet-width", str(args.resnet_width),
            "--max-epochs", str(epochs), "--warmup-epochs", str(warmup), "--lr", str(lr),
            "--ctc-weight", str(args.ctc_weight), "--max-frames", str(args.max_frames),
            "--average-last", str(min(args.average_last, epochs)), "--num-workers", "0",
            "--num-threads", str(threads), "--seed", str(args.seed), *extra]


def train_models(names: List[str], args, data: Dict[str, str], extra: Dict[str, List[str]],
                 seconds: Dict[str, float]) -> Dict[str, str]:
    """Train ``names`` (all at once with ``--parallel``, else one after another); their
    averaged checkpoints. A model with a checkpoint in OUT is reused."""
    from espnet.training.cpu_threads import available_cores

    ckpts, running = {}, []
    to_train = [name for name in names if not averaged_model(run_dir_of(name, args))]
    at_once = len(to_train) if args.parallel else 1
    threads = args.threads or max(1, available_cores() // max(1, at_once))
    for name in names:
        run_dir = run_dir_of(name, args)
        if name not in to_train:
            ckpts[name] = averaged_model(run_dir)
            print(f"[{name}] reusing {ckpts[name]}", flush=True)
            continue
        os.makedirs(run_dir, exist_ok=True)
        cmd = train_command(name, args, data, run_dir, extra.get(name, []), threads)
        log = open(os.path.join(run_dir, "train.log"), "w")
        log.write(" ".join(cmd) + "\n")
        log.flush()
        print(f"[{name}] training ({os.path.join(run_dir, 'train.log')})", flush=True)
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=dict(os.environ, PYTHONPATH=REPO))
        running.append((name, run_dir, proc, log, time.perf_counter()))
        if not args.parallel:
            _wait(running, ckpts, seconds)
    _wait(running, ckpts, seconds)
    return ckpts


def run_dir_of(name: str, args) -> str:
    """``OUT/<dir>`` of a model (the video model's depends on its recipe)."""
    return os.path.join(args.out, SCRATCH_VIDEO_DIR if name == VIDEO and args.video_from_scratch else RUN_DIRS[name])


def _wait(running: List[Tuple], ckpts: Dict[str, str], seconds: Dict[str, float]) -> None:
    failed = []
    for name, run_dir, proc, log, start in running:
        code = proc.wait()
        log.close()
        seconds[f"train {name}"] = time.perf_counter() - start
        if code != 0:
            failed.append(f"[{name}] training failed (exit {code}); see {os.path.join(run_dir, 'train.log')}")
            continue
        ckpts[name] = averaged_model(run_dir)
        print(f"[{name}] trained in {seconds[f'train {name}'] / 60:.1f} min: {ckpts[name]}", flush=True)
    running.clear()
    if failed:
        raise SystemExit("\n".join(failed))


def trained_epochs(ckpt: str) -> int:
    with open(ckpt[:-4] + ".json") as handle:
        last = json.load(handle)["averaged"][-1]  # "epoch=N.ckpt" (0-based)
    return int(last[len("epoch="):-len(".ckpt")]) + 1


def decode_rows(args, data: Dict[str, str], ckpts: Dict[str, str], snrs: List[Optional[float]],
                seconds: Dict[str, float]) -> Dict[str, Dict[str, float]]:
    """WER per table row and SNR label (cached per model/stream in ``OUT/<model>/wer*.json``)."""
    from datamodule.text_transform import TextTransform
    from espnet.asr.evaluate import evaluate
    from espnet.asr.pretrained import Recognizer
    from espnet.nets.pytorch_backend.decoder.base_decoder import DecodeOptions

    tokenizer = TextTransform(data["sp_model_path"], data["dict_path"])
    options = DecodeOptions(beam_size=args.beam_size, ctc_weight=args.decode_ctc_weight)
    results: Dict[str, Dict[str, float]] = {}
    for row, name, drop in ROWS:
        ckpt = ckpts[name]
        cache = os.path.join(os.path.dirname(ckpt), f"wer{'_no_' + drop if drop else ''}.json")
        settings = {"snrs": args.snrs, "beam": args.beam_size, "ctc": args.decode_ctc_weight, "ckpt": ckpt,
                    "drop": drop, "mtime": os.path.getmtime(ckpt)}
        if os.path.isfile(cache):
            with open(cache) as handle:
                cached = json.load(handle)
            if cached["settings"] == settings:
                results[row] = cached["wer"]
                print(f"[{row}] reusing decoded results from {cache}", flush=True)
                continue
        start = time.perf_counter()
        model = Recognizer.from_pretrained(ckpt).model
        has_audio = model.modality != "video" and drop != "audio"
        results[row] = {}
        for snr in snrs:
            if not has_audio and snr is not None:
                results[row][snr_label(snr)] = results[row]["clean"]
                continue
            res = evaluate(model, tokenizer, data["root"], "test.csv", options, snr_target=snr, seed=args.seed,
                           progress=False, drop_stream=drop)
            results[row][snr_label(snr)] = res.wer
            print(f"[{row}] {snr_label(snr)}: WER {100 * res.wer:.1f} % ({res.num_utterances} utterances, "
                  f"{res.seconds:.0f} s)", flush=True)
        seconds[f"decode {row}"] = time.perf_counter() - start
        with open(cache, "w") as handle:
            json.dump({"settings": settings, "wer": results[row]}, handle, indent=2)
    return results


def target_lines(results: Dict[str, Dict[str, float]], labels: List[str]) -> List[str]:
    """The issue's targets, each with the measured value and met / missed."""
    a, v, av = results[AUDIO], results[VIDEO], results[AV]
    no_v, no_a = results[NO_VIDEO], results[NO_AUDIO]
    checks = [(f"audio-only clean WER <= 5 %", 100 * a["clean"], 5.0, f"{100 * a['clean']:.1f} %"),
              (f"video-only WER <= 35 %", 100 * v["clean"], 35.0, f"{100 * v['clean']:.1f} %")]
    worst = max(labels, key=lambda l: av[l] - a[l])
    checks.append(("audio-visual <= audio-only at every SNR", av[worst] - a[worst], 0.0,
                   f"worst at {worst}: {100 * av[worst]:.1f} vs {100 * a[worst]:.1f} %"))
    if "-5 dB" in labels:
        ratio = av["-5 dB"] / max(a["-5 dB"], 1e-9)
        checks.append(("audio-visual <= 0.75 x audio-only at -5 dB", ratio, 0.75, f"{ratio:.2f} x"))
    rel = max((no_v[l] - a[l]) / max(a[l], 1e-9) for l in labels)
    checks.append(("video dropped: within 10 % (relative) of audio-only at every SNR", rel, 0.10, f"worst {100 * rel:+.0f} %"))
    rel_v = (no_a["clean"] - v["clean"]) / max(v["clean"], 1e-9)
    checks.append(("audio dropped: within 10 % (relative) of video-only", rel_v, 0.10, f"{100 * rel_v:+.0f} %"))
    return [f"| {what} | {shown} | {'met' if value <= bound + 1e-12 else 'missed'} |" for what, value, bound, shown in checks]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="exp/synthetic_wer", help="Output folder. (Default: exp/synthetic_wer)")
    p.add_argument("--num-utts", type=int, default=2000, help="Corpus size. (Default: 2000)")
    p.add_argument("--num-speakers", type=int, default=30, help="Speakers. (Default: 30)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--epochs-audio", type=int, default=30, help="Epochs of the audio-only model. (Default: 30)")
    p.add_argument("--epochs-video", type=int, default=None,
                   help="Epochs of the video-only model. (Default: 8; 18 with --video-from-scratch)")
    p.add_argument("--epochs-av", type=int, default=6, help="Epochs of the audio-visual model. (Default: 6)")
    p.add_argument("--lr-audio", type=float, default=2e-3)
    p.add_argument("--lr-video", type=float, default=None, help="(Default: 1e-3; 2e-3 with --video-from-scratch)")
    p.add_argument("--lr-av", type=float, default=1e-3, help="(Default: 1e-3: it starts from trained models)")
    p.add_argument("--warmup-epochs", type=int, default=2, help="Warm-up of a model trained from scratch. (Default: 2)")
    p.add_argument("--warmup-epochs-init", type=int, default=1,
                   help="Warm-up of a model that starts from trained parts (the video model from the audio model's "
                        "back-end, the audio-visual model unless --no-init). (Default: 1)")
    p.add_argument("--video-from-scratch", action="store_true",
                   help="Train the video-only model from scratch (in OUT/video), not from the audio model's back-end "
                        "(OUT/video_from_audio).")
    p.add_argument("--average-last", type=int, default=5, help="Epoch checkpoints averaged per model. (Default: 5)")
    p.add_argument("--fusion", default="gated", help="--fusion-type of the audio-visual model. (Default: gated)")
    p.add_argument("--modality-dropout", type=float, default=0.5,
                   help="--modality-dropout of the audio-visual model. (Default: 0.5)")
    p.add_argument("--no-init", action="store_true",
                   help="Train the audio-visual model from scratch instead of from the two single-stream models.")
    p.add_argument("--parallel", action=argparse.BooleanOptionalAction, default=True,
                   help="With --video-from-scratch: train the audio-only and video-only models at the same time. "
                        "(Default: on)")
    p.add_argument("--threads", type=int, default=0,
                   help="--num-threads of each training process; 0 = the cores shared among the models trained "
                        "at once (on 2 cores: 1 each for audio-only and video-only, 2 for audio-visual). (Default: 0)")
    p.add_argument("--adim", type=int, default=96)
    p.add_argument("--elayers", type=int, default=2)
    p.add_argument("--resnet-width", type=int, default=16)
    p.add_argument("--ctc-weight", type=float, default=0.3, help="Training CTC weight. (Default: 0.3)")
    p.add_argument("--decode-ctc-weight", type=float, default=0.5, help="Decoding CTC weight. (Default: 0.5)")
    p.add_argument("--beam-size", type=int, default=5)
    p.add_argument("--max-frames", type=int, default=300)
    p.add_argument("--snrs", default="clean,10,5,0,-5", help="Comma-separated; 'clean' = no noise.")
    args = p.parse_args()
    if args.epochs_video is None:
        args.epochs_video = 18 if args.video_from_scratch else 8
    if args.lr_video is None:
        args.lr_video = 2e-3 if args.video_from_scratch else 1e-3
    start = time.perf_counter()
    seconds: Dict[str, float] = {}
    cpu: Dict[str, float] = {}
    mark = cpu_seconds()

    def cpu_step(what: str) -> None:
        nonlocal mark
        now = cpu_seconds()
        cpu[what] = now - mark
        mark = now

    snrs = parse_snrs(args.snrs)
    data_dir = os.path.join(args.out, "data")
    if not os.path.isfile(os.path.join(data_dir, "labels", "test.csv")):
        from preparation.synthetic_av import generate

        t0 = time.perf_counter()
        generate(data_dir, num_utts=args.num_utts, num_speakers=args.num_speakers, seed=args.seed, progress=False)
        seconds["corpus"] = time.perf_counter() - t0
    cpu_step("corpus")
    data = {"root": data_dir, "sp_model_path": os.path.join(data_dir, "spm", "synth_unigram.model"),
            "dict_path": os.path.join(data_dir, "spm", "synth_unigram_units.txt")}

    if args.video_from_scratch:
        ckpts = train_models([AUDIO, VIDEO], args, data, {}, seconds)
        cpu_step("train audio-only and video-only")
    else:
        ckpts = train_models([AUDIO], args, data, {}, seconds)
        cpu_step("train audio-only")
        backend = ["--pretrained-model-path", ckpts[AUDIO], "--transfer-backend"]
        ckpts.update(train_models([VIDEO], args, data, {VIDEO: backend}, seconds))
        cpu_step("train video-only")
    av_flags = ["--modality-dropout", str(args.modality_dropout)]
    if not args.no_init:
        av_flags += ["--init-audio-from", ckpts[AUDIO], "--init-video-from", ckpts[VIDEO]]
    ckpts.update(train_models([AV], args, data, {AV: av_flags}, seconds))
    cpu_step("train audio-visual")

    from espnet.training.cpu_threads import apply_num_threads

    apply_num_threads(0)
    results = decode_rows(args, data, ckpts, snrs, seconds)
    cpu_step("decode")
    seconds["total"] = time.perf_counter() - start
    cpu["total"] = sum(cpu.values())

    labels = [snr_label(s) for s in snrs]
    epochs = {row: trained_epochs(ckpts[name]) for row, name, _ in ROWS}
    lines = ["| model | epochs | " + " | ".join(labels) + " |", "| --- | --- |" + " --- |" * len(labels)]
    for row, values in results.items():
        lines.append(f"| {row} | {epochs[row]} | " + " | ".join(f"{100 * values[l]:.1f}" for l in labels) + " |")
    table = "\n".join(lines)
    targets = "\n".join(["| target | measured | |", "| --- | --- | --- |", *target_lines(results, labels)])
    times = "\n".join(f"* {what}: {value / 60:.1f} min" for what, value in seconds.items())
    times += "\n\nCPU time (all processes of this run):\n\n" + "\n".join(
        f"* {what}: {value / 3600:.2f} core-hours" for what, value in cpu.items())
    with open(os.path.join(args.out, "results.md"), "w") as handle:
        handle.write("Test WER (%) on unseen speakers, babble noise at each SNR\n\n" + table + "\n\n" + targets
                     + "\n\nTime (this run; reused steps are not counted):\n\n" + times + "\n")
    with open(os.path.join(args.out, "results.json"), "w") as handle:
        json.dump({"wer": results, "epochs": epochs, "seconds": seconds, "cpu_seconds": cpu, "args": vars(args),
                   "load_average": os.getloadavg()}, handle, indent=2)

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4))
    styles = {AUDIO: "o-", VIDEO: "s-", AV: "D-", NO_VIDEO: "o--", NO_AUDIO: "s--"}
    for row, values in results.items():
        ax.plot(labels, [100 * values[l] for l in labels], styles[row], label=row)
    ax.set_xlabel("babble SNR")
    ax.set_ylabel("test WER (%)")
    ax.set_title("Generated GRID-style corpus, unseen test speakers")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(os.path.join(args.out, "wer_vs_snr.png"), dpi=120)
    print(table + "\n\n" + targets + "\n\n" + times)
    print(f"wrote {os.path.join(args.out, 'results.md')} and {os.path.join(args.out, 'wer_vs_snr.png')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
