"""Decoding speed of a full-size (250 M parameter) Auto-AVSR video model on this machine.

Builds the legacy-size model with random weights, saves it as a plain ``model_avg.pth``,
writes N two-second clips with a label CSV, and runs ``eval.py --modality video`` on them
(beam 40, CTC weight 0.1, as the original recipe). Prints utterances per second.
Random weights rarely emit <eos>, so hypotheses run to the maximum length (the encoder
length): this is a worst case for the decoder.

    python benchmarks/legacy_eval_speed.py --sp-model-path ../shared/legacy/spm/unigram5000.model \
        --dict-path ../shared/legacy/spm/unigram5000_units.txt --num-utts 4
"""

import argparse
import os
import subprocess
import sys
import tempfile
import time

import torch

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)


def main() -> int:
    from datamodule.label_list import format_label_line
    from datamodule.media import write_video
    from datamodule.text_transform import TextTransform
    from espnet.nets.pytorch_backend.e2e_asr_conformer import E2E
    from espnet.nets.pytorch_backend.model_config import ModelConfig

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sp-model-path", required=True)
    p.add_argument("--dict-path", required=True)
    p.add_argument("--num-utts", type=int, default=4)
    p.add_argument("--seconds", type=float, default=2.0)
    p.add_argument("--beam-size", type=int, default=40)
    args = p.parse_args()
    tt = TextTransform(args.sp_model_path, args.dict_path)
    with tempfile.TemporaryDirectory() as tmp:
        torch.manual_seed(0)
        model = E2E(ModelConfig(odim=tt.odim, vision_encoder="resnet"))
        n_params = sum(p.numel() for p in model.parameters())
        ckpt = os.path.join(tmp, "model_avg_10.pth")
        torch.save(model.state_dict(), ckpt)
        del model
        n_frames = int(round(args.seconds * 25))
        rows = []
        os.makedirs(os.path.join(tmp, "bench", "clips"))
        for i in range(args.num_utts):
            frames = (torch.rand(n_frames, 96, 96) * 255).to(torch.uint8)
            rel = f"clips/{i:03d}.mp4"
            write_video(os.path.join(tmp, "bench", rel), frames)
            rows.append(format_label_line("bench", rel, n_frames, tt.tokenize("HELLO WORLD").tolist()))
        os.makedirs(os.path.join(tmp, "labels"))
        with open(os.path.join(tmp, "labels", "test.csv"), "w") as handle:
            handle.write("\n".join(rows) + "\n")
        cmd = [sys.executable, os.path.join(REPO, "eval.py"), "--modality", "video", "--root-dir", tmp,
               "--test-file", "test.csv", "--pretrained-model-path", ckpt, "--sp-model-path", args.sp_model_path,
               "--dict-path", args.dict_path, "--beam-size", str(args.beam_size), "--num-workers", "1",
               "--accelerator", "cpu"]
        start = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True, env=dict(os.environ, PYTHONPATH=REPO))
        wall = time.perf_counter() - start
        if proc.returncode != 0:
            print(proc.stderr[-3000:], file=sys.stderr)
            return proc.returncode
        print(proc.stdout.strip())
        print(f"full-size video model: {n_params / 1e6:.1f} M parameters, {args.num_utts} clips of {args.seconds} s, "
              f"beam {args.beam_size}, {torch.get_num_threads()} threads")
        print(f"eval.py wall time incl. start-up and model load: {wall:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
