"""Test WER against babble SNR for audio-only, video-only and audio-visual (gated fusion)
models trained on the generated corpus (test speakers unseen in training).

    python benchmarks/synthetic_wer.py --out exp/synthetic_wer

generates the corpus (``preparation.synthetic_av``), trains the three models with
``train.py``, decodes the test split clean and at each SNR (babble from the corpus's own
``babble.wav``, reproducible per utterance), and writes ``OUT/results.md`` (markdown
table), ``OUT/results.json`` and ``OUT/wer_vs_snr.png``. Noise is added to audio only, so
the video-only WER is the same at every SNR (it is decoded once). Existing checkpoints in
OUT are reused (delete OUT/<model> to retrain).
"""

import argparse
import json
import os
import subprocess
import sys
import time
from typing import Dict, List, Optional

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

MODELS = {
    "audio-only": ["--audio-encoder", "resnet1d"],
    "video-only": ["--vision-encoder", "resnet"],
    "audio-visual (gated)": ["--vision-encoder", "resnet", "--audio-encoder", "resnet1d", "--fusion-type", "gated"],
}
EPOCH_FLAGS = {"audio-only": "epochs_audio", "video-only": "epochs_video", "audio-visual (gated)": "epochs_av"}


def parse_snrs(text: str) -> List[Optional[float]]:
    out: List[Optional[float]] = []
    for part in text.split(","):
        part = part.strip()
        out.append(None if part == "clean" else float(part))
    return out


def snr_label(snr: Optional[float]) -> str:
    return "clean" if snr is None else f"{snr:g} dB"


def train(name: str, flags: List[str], epochs: int, args, data: Dict[str, str], run_dir: str) -> str:
    existing = [f for f in os.listdir(run_dir) if f.startswith("model_avg_") and f.endswith(".pth")] if os.path.isdir(run_dir) else []
    if existing:
        print(f"[{name}] reusing {os.path.join(run_dir, existing[0])}")
        return os.path.join(run_dir, existing[0])
    cmd = [sys.executable, os.path.join(REPO, "train.py"), "--exp-dir", os.path.dirname(run_dir),
           "--exp-name", os.path.basename(run_dir), *flags, "--decoder", "transformer",
           "--root-dir", data["root"], "--train-file", "train.csv", "--val-file", "val.csv",
           "--sp-model-path", data["sp_model_path"], "--dict-path", data["dict_path"],
           "--adim", str(args.adim), "--aheads", "4", "--eunits", str(4 * args.adim), "--elayers", str(args.elayers),
           "--dunits", str(4 * args.adim), "--dlayers", "1", "--resnet-width", str(args.resnet_width),
           "--max-epochs", str(epochs), "--warmup-epochs", "2", "--lr", str(args.lr),
           "--ctc-weight", str(args.ctc_weight), "--max-frames", str(args.max_frames),
           "--num-workers", "1", "--seed", str(args.seed)]
    os.makedirs(run_dir, exist_ok=True)
    start = time.perf_counter()
    with open(os.path.join(run_dir, "train.log"), "w") as log:
        proc = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, env=dict(os.environ, PYTHONPATH=REPO))
    if proc.returncode != 0:
        raise SystemExit(f"[{name}] training failed; see {os.path.join(run_dir, 'train.log')}")
    print(f"[{name}] trained in {time.perf_counter() - start:.0f} s")
    return train(name, flags, epochs, args, data, run_dir)


def main() -> int:
    from datamodule.text_transform import TextTransform
    from espnet.asr.evaluate import evaluate, load_model
    from espnet.nets.pytorch_backend.model_config import ModelConfig
    from espnet.training.checkpoints import load_checkpoint

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="exp/synthetic_wer", help="Output folder. (Default: exp/synthetic_wer)")
    p.add_argument("--num-utts", type=int, default=1200, help="Corpus size. (Default: 1200)")
    p.add_argument("--num-speakers", type=int, default=20, help="Speakers. (Default: 20)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--epochs", type=int, default=20, help="Training epochs per model. (Default: 20)")
    p.add_argument("--epochs-audio", type=int, default=None, help="Override --epochs for the audio-only model.")
    p.add_argument("--epochs-video", type=int, default=None, help="Override --epochs for the video-only model.")
    p.add_argument("--epochs-av", type=int, default=None, help="Override --epochs for the audio-visual model.")
    p.add_argument("--adim", type=int, default=96)
    p.add_argument("--elayers", type=int, default=2)
    p.add_argument("--resnet-width", type=int, default=16)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--ctc-weight", type=float, default=0.3, help="Training CTC weight. (Default: 0.3)")
    p.add_argument("--decode-ctc-weight", type=float, default=0.5, help="Decoding CTC weight. (Default: 0.5)")
    p.add_argument("--beam-size", type=int, default=5)
    p.add_argument("--max-frames", type=int, default=300)
    p.add_argument("--snrs", default="clean,10,5,0,-5", help="Comma-separated; 'clean' = no noise.")
    args = p.parse_args()
    snrs = parse_snrs(args.snrs)
    data_dir = os.path.join(args.out, "data")
    if not os.path.isfile(os.path.join(data_dir, "labels", "test.csv")):
        from preparation.synthetic_av import generate

        generate(data_dir, num_utts=args.num_utts, num_speakers=args.num_speakers, seed=args.seed)
    data = {"root": data_dir, "sp_model_path": os.path.join(data_dir, "spm", "synth_unigram.model"),
            "dict_path": os.path.join(data_dir, "spm", "synth_unigram_units.txt")}
    tokenizer = TextTransform(data["sp_model_path"], data["dict_path"])

    results: Dict[str, Dict[str, float]] = {}
    trained_epochs: Dict[str, int] = {}
    for name, flags in MODELS.items():
        run_dir = os.path.join(args.out, name.split()[0])
        epochs = getattr(args, EPOCH_FLAGS[name]) or args.epochs
        ckpt = train(name, flags, epochs, args, data, run_dir)
        with open(ckpt[:-4] + ".json") as handle:
            last = json.load(handle)["averaged"][-1]  # "epoch=N.ckpt" (0-based)
        trained_epochs[name] = int(last[len("epoch="):-len(".ckpt")]) + 1
        cache = os.path.join(run_dir, "wer.json")
        settings = {"snrs": args.snrs, "beam": args.beam_size, "ctc": args.decode_ctc_weight, "ckpt": ckpt}
        if os.path.isfile(cache):
            with open(cache) as handle:
                cached = json.load(handle)
            if cached["settings"] == settings:
                results[name] = cached["wer"]
                print(f"[{name}] reusing decoded results from {cache}")
                continue
        state, stored, _ = load_checkpoint(ckpt)
        model = load_model(ModelConfig.from_dict(stored), state, ckpt)
        results[name] = {}
        for snr in snrs:
            if model.modality == "video" and snr is not None:
                results[name][snr_label(snr)] = results[name]["clean"]
                continue
            res = evaluate(model, tokenizer, data_dir, "test.csv", beam_size=args.beam_size,
                           ctc_weight=args.decode_ctc_weight, snr_target=snr, seed=args.seed, progress=False)
            results[name][snr_label(snr)] = res.wer
            print(f"[{name}] {snr_label(snr)}: WER {100 * res.wer:.1f} % ({res.num_utterances} utterances)")
        with open(cache, "w") as handle:
            json.dump({"settings": settings, "wer": results[name]}, handle, indent=2)

    labels = [snr_label(s) for s in snrs]
    lines = ["| model | epochs | " + " | ".join(labels) + " |", "| --- | --- |" + " --- |" * len(labels)]
    for name, row in results.items():
        lines.append(f"| {name} | {trained_epochs[name]} | " + " | ".join(f"{100 * row[l]:.1f}" for l in labels) + " |")
    table = "\n".join(lines)
    with open(os.path.join(args.out, "results.md"), "w") as handle:
        handle.write("Test WER (%) on unseen speakers, babble noise at each SNR\n\n" + table + "\n")
    with open(os.path.join(args.out, "results.json"), "w") as handle:
        json.dump({"wer": results, "epochs": trained_epochs, "args": vars(args)}, handle, indent=2)

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for name, row in results.items():
        ax.plot(labels, [100 * row[l] for l in labels], marker="o", label=name)
    ax.set_xlabel("babble SNR")
    ax.set_ylabel("test WER (%)")
    ax.set_title("Synthetic GRID-style corpus, unseen test speakers")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(os.path.join(args.out, "wer_vs_snr.png"), dpi=120)
    print(table)
    print(f"wrote {os.path.join(args.out, 'results.md')} and {os.path.join(args.out, 'wer_vs_snr.png')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
