"""Decoding speed of the full-size (250 M parameter) Auto-AVSR model: one utterance at a
time vs ``--batch-size`` utterances at once, side by side in one run, with the hypotheses
of both checked to be identical.

The legacy-size model (video: 3D-conv + ResNet-18 frontend, 12 Conformer blocks, 6
decoder blocks, 5049 tokens) gets random weights; the utterances are random inputs of
mixed lengths, sorted by length and cut into batches as ``eval.py`` does. Both modes run
each batch in turn (one at a time, then together), so a machine shared with other work
slows both alike. Joint CTC/attention beam search as in the original recipe (decoder
0.9 / CTC 0.1 on the 1.5 x beam pre-beam).

Random weights never emit ``<eos>``: every hypothesis runs to the maximum length. The
benchmark therefore caps hypotheses at ``--max-len-ratio`` x encoder frames (default 0.2:
5 tokens per second of media at 25 frames/s), standing in for a trained model that ends
its hypotheses; ``--max-len-ratio 0`` runs them to the encoder length (the default
decoding limit, the worst case: what a model that never ends costs).

Prints utterances/s, the real-time factor (decode seconds / media seconds), the share of
time spent in the encoder, the decoder, the CTC prefix scorer and the rest of the search,
the speed-up of batching (wall time, and process CPU time, which a machine shared with
other work disturbs less), and the throughput of one decoder matrix at one utterance's
beam of rows vs the batch's: batching does the same arithmetic, so that ratio bounds what
it can gain in the decoder.

    python benchmarks/eval_speed.py --beams 40 10 --batch-size 8 --num-utts 16
"""

import argparse
import os
import sys
import time
from typing import Dict, List

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def make_utterances(modality: str, frames: List[int], seed: int) -> List[Dict[str, torch.Tensor]]:
    """Random unbatched inputs: ``video`` ``(T, 1, 88, 88)`` / ``audio`` ``(640 T, 1)``."""
    gen = torch.Generator().manual_seed(seed)
    items = []
    for n in frames:
        if modality == "video":
            items.append({"video": torch.randn(n, 1, 88, 88, generator=gen)})
        else:
            items.append({"audio": torch.randn(n * 640, 1, generator=gen)})
    return items


class Clock:
    """Wall seconds per stage (``encoder`` + the beam search's per-scorer timings)."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.seconds: Dict[str, float] = {}

    def now(self) -> float:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        return time.perf_counter()

    def add(self, stage: str, seconds: float) -> None:
        self.seconds[stage] = self.seconds.get(stage, 0.0) + seconds


def decode(model, search, items, ratio: float, clock: Clock):
    """Encode and decode ``items`` together; n-best lists, one per utterance."""
    from espnet.asr.recognizer import encode_utterances

    start = clock.now()
    memory, lengths = encode_utterances(model, items)
    clock.add("encoder", clock.now() - start)
    search.timings = {}
    hyps = search.batch_forward(memory, lengths, maxlenratio=ratio)
    for stage, seconds in search.timings.items():
        clock.add(stage, seconds)
    search.timings = None
    return hyps


def compare(alone, together) -> float:
    """Max |score difference| of two decodings; raises if any token sequence differs."""
    worst = 0.0
    for i, (a, b) in enumerate(zip(alone, together)):
        if [h.yseq.tolist() for h in a] != [h.yseq.tolist() for h in b]:
            raise SystemExit(f"utterance {i}: batched hypotheses differ from one-at-a-time decoding")
        worst = max([worst] + [abs(x.score - y.score) for x, y in zip(a, b)])
    return worst


def matmul_gflops(rows: int, device: torch.device, seconds: float = 1.0) -> float:
    """Throughput of ``Linear(768, 3072)`` on ``rows`` rows (one FFN matrix of the decoder)."""
    layer = torch.nn.Linear(768, 3072).to(device)
    x = torch.randn(rows, 768, device=device)
    clock = Clock(device)
    with torch.no_grad():
        layer(x)
        calls, start = 0, clock.now()
        while clock.now() - start < seconds:
            layer(x)
            calls += 1
        elapsed = clock.now() - start
    return 2 * rows * 768 * 3072 * calls / elapsed / 1e9


def row(beam, batch, n_utts, media_seconds, clock: Clock, total: float, extra: str = "") -> str:
    shares = {k: 100 * clock.seconds.get(k, 0.0) / total for k in ("encoder", "decoder", "ctc")}
    other = 100 - sum(shares.values())
    return (f"| {beam} | {batch} | {n_utts / total:.3f} | {total / media_seconds:.3f} | {shares['encoder']:.0f} % | "
            f"{shares['decoder']:.0f} % | {shares['ctc']:.0f} % | {other:.0f} % | {extra} |")


def main() -> int:
    from espnet.asr.evaluate import length_sorted_batches
    from espnet.asr.recognizer import build_beam_search
    from espnet.nets.pytorch_backend.e2e_asr_conformer import E2E
    from espnet.nets.pytorch_backend.model_config import LEGACY_MODALITY_ENCODERS, ModelConfig

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--modality", default="video", choices=["video", "audio"])
    p.add_argument("--beams", type=int, nargs="+", default=[40, 10], help="Beam sizes. (Default: 40 10)")
    p.add_argument("--batch-size", type=int, default=8, help="Utterances decoded together. (Default: 8)")
    p.add_argument("--num-utts", type=int, default=16, help="Utterances. (Default: 16)")
    p.add_argument("--min-seconds", type=float, default=1.5, help="Shortest utterance. (Default: 1.5)")
    p.add_argument("--max-seconds", type=float, default=3.0, help="Longest utterance. (Default: 3.0)")
    p.add_argument("--max-len-ratio", type=float, default=0.2,
                   help="Hypothesis length cap per encoder frame; 0 = the encoder length. (Default: 0.2)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads. (Default: torch's default)")
    p.add_argument("--device", default="cpu", help="cpu or cuda. (Default: cpu)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if args.num_utts < 1 or args.batch_size < 1 or not 0 < args.min_seconds <= args.max_seconds:
        p.error("--num-utts and --batch-size must be >= 1 and 0 < --min-seconds <= --max-seconds")

    torch.manual_seed(args.seed)
    vision, audio = LEGACY_MODALITY_ENCODERS[args.modality]
    model = E2E(ModelConfig(odim=5049, vision_encoder=vision, audio_encoder=audio)).eval().to(device)
    n_params = sum(p.numel() for p in model.parameters())
    lo, hi = round(args.min_seconds * 25), round(args.max_seconds * 25)
    frames = [round(lo + (hi - lo) * i / max(1, args.num_utts - 1)) for i in range(args.num_utts)]
    items = [{k: v.to(device) for k, v in item.items()} for item in make_utterances(args.modality, frames, args.seed)]
    batches = length_sorted_batches(frames, args.batch_size)
    media_seconds = sum(frames) / 25
    cap = f"{args.max_len_ratio} x frames" if args.max_len_ratio > 0 else "the encoder length (worst case)"
    load = os.getloadavg()[0]
    print(f"full-size {args.modality} model: {n_params / 1e6:.1f} M parameters; {args.num_utts} utterances of "
          f"{args.min_seconds}-{args.max_seconds} s ({lo}-{hi} frames, {media_seconds:.1f} s in all); hypotheses "
          f"capped at {cap}; {device}, {torch.get_num_threads()} thread(s)")

    with torch.no_grad():
        search = build_beam_search(model, beam_size=2)
        decode(model, search, items[-1:], args.max_len_ratio, Clock(device))  # warm-up
        print("\n| beam | batch | utt/s | RTF | encoder | decoder | CTC | rest | result |")
        print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
        for beam in args.beams:
            search = build_beam_search(model, beam_size=beam, ctc_weight=0.1)
            n = args.batch_size
            clocks = {1: Clock(device), n: Clock(device)}
            wall, cpu = {1: 0.0, n: 0.0}, {1: 0.0, n: 0.0}
            worst = 0.0
            for batch in batches:
                group = [items[i] for i in batch]
                start, cpu_start = clocks[1].now(), time.process_time()
                alone = [decode(model, search, [item], args.max_len_ratio, clocks[1])[0] for item in group]
                wall[1] += clocks[1].now() - start
                cpu[1] += time.process_time() - cpu_start
                start, cpu_start = clocks[n].now(), time.process_time()
                together = decode(model, search, group, args.max_len_ratio, clocks[n])
                wall[n] += clocks[n].now() - start
                cpu[n] += time.process_time() - cpu_start
                worst = max(worst, compare(alone, together))
            print(row(beam, 1, args.num_utts, media_seconds, clocks[1], wall[1]))
            print(row(beam, n, args.num_utts, media_seconds, clocks[n], wall[n],
                      f"{wall[1] / wall[n]:.2f}x ({cpu[1] / cpu[n]:.2f}x in CPU time), identical hypotheses "
                      f"(max score difference {worst:.1e})"))
    rows_1, rows_n = max(args.beams), max(args.beams) * args.batch_size
    print(f"\nmatmul ceiling: Linear(768, 3072) at {rows_1} rows {matmul_gflops(rows_1, device):.0f} GFLOP/s, at "
          f"{rows_n} rows {matmul_gflops(rows_n, device):.0f} GFLOP/s (the decoder's matrices, one utterance's "
          f"beam vs the batch's)")
    print(f"load average (1 min) {load:.1f} at the start, {os.getloadavg()[0]:.1f} at the end "
          f"({os.cpu_count()} CPUs); RTF = decode seconds / media seconds")
    return 0


if __name__ == "__main__":
    sys.exit(main())
