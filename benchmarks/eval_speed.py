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

``--device cuda`` decodes on a GPU (timings between ``torch.cuda.synchronize()``);
``--json PATH`` also writes the numbers of the table (``benchmarks/gpu_speed.py`` reads
them); ``--tiny`` swaps the full-size model for a tiny one of the same kind (testing the
script, not a measurement).

``--original-checkout PATH`` (a checkout of the original Auto-AVSR code, github
mpc001/auto_avsr) measures instead the whole decoding process against the original's: the
same random weights are written once as a legacy checkpoint (``model_avg_10.pth`` layout)
and the same ``--num-utts`` clips (default 8) to a temporary folder; then each side runs as
a fresh Python process that loads the checkpoint and the clips and decodes them at the first
of ``--beams`` with the same length cap: the original as its ``eval.py`` does (one clip at a
time: frontend, encoder and its ``BatchBeamSearch`` under ``torch.inference_mode``, weights
decoder 0.9 / CTC 0.1, length bonus 0), this project as ``eval.py`` does (the clips in
batches of ``--batch-size``: batched encoding and beam search). The two alternate
``--repeats`` times (original first, then this project), so that load on a shared machine
hits both alike; the wall time of each process (interpreter start, imports, model load and
decoding) is measured from outside, and its CPU time (less disturbed by other work). The best hypothesis of every clip must have the same
token ids on both sides (else exit status 1); the median wall times and their ratio are
printed.

    python benchmarks/eval_speed.py --original-checkout exp/auto_avsr --beams 40 --repeats 3
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


TINY = {"odim": 100, "adim": 16, "aheads": 2, "encoder_conf": {"linear_units": 32, "num_blocks": 1},
        "decoder_conf": {"dunits": 32, "dlayers": 1}, "width": 4}  # --tiny: the same kind of model, small


def legacy_model(modality: str, tiny: bool = False):
    """The full-size legacy Auto-AVSR model of this project (random weights); with ``tiny``,
    a small model of the same kind (:data:`TINY`: 100 tokens, 16-d, one block each)."""
    from espnet.nets.pytorch_backend.e2e_asr_conformer import E2E
    from espnet.nets.pytorch_backend.model_config import LEGACY_MODALITY_ENCODERS, ModelConfig

    vision, audio = LEGACY_MODALITY_ENCODERS[modality]
    if not tiny:
        return E2E(ModelConfig(odim=5049, vision_encoder=vision, audio_encoder=audio)).eval()
    width = {"width": TINY["width"]}
    return E2E(ModelConfig(odim=TINY["odim"], vision_encoder=vision, audio_encoder=audio,
                           vision_encoder_conf=width if vision else {}, audio_encoder_conf=width if audio else {},
                           encoder_conf=TINY["encoder_conf"], decoder_conf=TINY["decoder_conf"],
                           adim=TINY["adim"], aheads=TINY["aheads"])).eval()


def clip_frames(n: int, min_seconds: float, max_seconds: float) -> List[int]:
    """``n`` clip lengths in frames (25 Hz), evenly spread over ``[min_seconds, max_seconds]``."""
    lo, hi = round(min_seconds * 25), round(max_seconds * 25)
    return [round(lo + (hi - lo) * i / max(1, n - 1)) for i in range(n)]


def child_ours(args, folder: str) -> List[Dict]:
    """This project's decoding process (as ``eval.py`` decodes): load the legacy checkpoint,
    encode and decode the clips in length-sorted batches of ``--batch-size``."""
    from espnet.asr.recognizer import build_beam_search, encode_utterances
    from espnet.training.checkpoints import load_checkpoint, load_state_checked

    from espnet.utils.skip_weight_init import skip_weight_init

    path = os.path.join(folder, "model_avg_10.pth")
    state, _, _ = load_checkpoint(path)
    with skip_weight_init():  # as espnet.asr.pretrained.build_model does
        model = legacy_model(args.modality)
    load_state_checked(model, state, path)
    model.eval()
    items = torch.load(os.path.join(folder, "clips.pt"), weights_only=True)
    search = build_beam_search(model, beam_size=args.beams[0], ctc_weight=0.1)
    eos = model.decoder.eos
    results: List[Dict] = [{}] * len(items)
    with torch.no_grad():
        # longest first, as eval.py batches (its module also loads the data pipeline, which decoding does not need)
        order = sorted(range(len(items)), key=lambda i: -next(iter(items[i].values())).size(0))
        for batch in (order[i : i + args.batch_size] for i in range(0, len(order), args.batch_size)):
            memory, lengths = encode_utterances(model, [items[i] for i in batch])
            for i, hyps in zip(batch, search.batch_forward(memory, lengths, maxlenratio=args.max_len_ratio)):
                results[i] = {"ids": strip(hyps[0].yseq.tolist()[1:], eos), "score": float(hyps[0].score)}
    return results


def child_original(args, folder: str) -> List[Dict]:
    """The original Auto-AVSR decoding process (as its ``eval.py`` / ``ModelModule.test_step``):
    its model loads the checkpoint, each clip goes alone through frontend, projection,
    encoder and its ``BatchBeamSearch`` (decoder 0.9, CTC 0.1, length bonus 0)."""
    # its ``espnet`` (a namespace package: ours, a regular package, would win wherever it is on the path)
    ours = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    sys.path[:] = [os.path.abspath(args.original_checkout)] + [
        p for p in sys.path if os.path.abspath(p or os.curdir) != ours]
    from espnet.nets.batch_beam_search import BatchBeamSearch
    from espnet.nets.pytorch_backend.e2e_asr_conformer import E2E
    from espnet.nets.scorers.length_bonus import LengthBonus

    model = E2E(5049, args.modality)
    model.load_state_dict(torch.load(os.path.join(folder, "model_avg_10.pth"), weights_only=True))
    model.eval()
    items = torch.load(os.path.join(folder, "clips.pt"), weights_only=True)
    scorers = model.scorers()
    scorers["length_bonus"] = LengthBonus(5049)
    search = BatchBeamSearch(beam_size=args.beams[0], vocab_size=5049, scorers=scorers, sos=5048, eos=5048,
                             weights={"decoder": 0.9, "ctc": 0.1, "length_bonus": 0.0},
                             token_list=[str(i) for i in range(5049)], pre_beam_score_key="decoder")
    results = []
    with torch.inference_mode():  # Lightning's test loop
        for item in items:
            x = model.frontend(item[args.modality].unsqueeze(0))
            x = model.proj_encoder(x)
            enc, _ = model.encoder(x, None)
            best = search(enc.squeeze(0), maxlenratio=args.max_len_ratio)[0]
            results.append({"ids": strip(best.yseq.tolist()[1:], 5048), "score": float(best.score)})
    return results


def strip(ids: List[int], eos: int) -> List[int]:
    """Token ids without the trailing ``eos`` (two where the length limit added one)."""
    while ids and ids[-1] == eos:
        ids.pop()
    return ids


def versus_original(args) -> int:
    """Whole decoding processes, the original's and this project's, alternating; see the
    module docstring."""
    import json
    import resource
    import statistics
    import subprocess
    import tempfile

    from espnet.utils.atomic_write import atomic_torch_save

    checkout = os.path.abspath(args.original_checkout)
    if not os.path.isfile(os.path.join(checkout, "espnet", "nets", "batch_beam_search.py")):
        raise SystemExit(f"--original-checkout {args.original_checkout}: not a checkout of the original "
                         "Auto-AVSR code (no espnet/nets/batch_beam_search.py)")
    torch.manual_seed(args.seed)
    model = legacy_model(args.modality)
    n_params = sum(p.numel() for p in model.parameters())
    frames = clip_frames(args.num_utts, args.min_seconds, args.max_seconds)
    items = make_utterances(args.modality, frames, args.seed)
    beam = args.beams[0]
    cap = f"{args.max_len_ratio} x frames" if args.max_len_ratio > 0 else "the encoder length"
    script = os.path.abspath(__file__)
    threads = ["--threads", str(args.threads)] if args.threads else []
    with tempfile.TemporaryDirectory(prefix="eval_speed_") as folder:
        atomic_torch_save(model.state_dict(), os.path.join(folder, "model_avg_10.pth"))
        atomic_torch_save(items, os.path.join(folder, "clips.pt"))
        del model
        print(f"full-size {args.modality} model: {n_params / 1e6:.1f} M parameters (random weights); "
              f"{len(items)} clips of {frames[0]}-{frames[-1]} frames ({sum(frames) / 25:.1f} s); beam {beam}, "
              f"hypotheses capped at {cap}; this project in batches of {args.batch_size}; "
              f"{args.threads or 'default'} thread(s); {args.repeats} alternating runs each")
        seconds: Dict[str, List[float]] = {"original": [], "ours": []}
        cpu: Dict[str, List[float]] = {"original": [], "ours": []}  # CPU seconds of the process
        hyps: Dict[str, List] = {}
        load = [os.getloadavg()[0]]
        for run in range(args.repeats):
            for side in ("original", "ours"):
                out = os.path.join(folder, f"{side}.json")
                cmd = [sys.executable, script, "--child", side, "--child-folder", folder, "--modality", args.modality,
                       "--beams", str(beam), "--batch-size", str(args.batch_size),
                       "--max-len-ratio", str(args.max_len_ratio), "--original-checkout", checkout] + threads
                before = resource.getrusage(resource.RUSAGE_CHILDREN)
                start = time.perf_counter()
                done = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                seconds[side].append(time.perf_counter() - start)
                after = resource.getrusage(resource.RUSAGE_CHILDREN)
                cpu[side].append(after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime)
                if done.returncode != 0:
                    raise SystemExit(f"the {side} decoding process failed (exit status {done.returncode}):\n"
                                     f"{done.stderr[-4000:]}")
                with open(out) as f:
                    result = json.load(f)
                if side in hyps and hyps[side] != [h["ids"] for h in result]:
                    raise SystemExit(f"the {side} decoding process gave other hypotheses in run {run + 1}")
                hyps[side] = [h["ids"] for h in result]
                scores = [h["score"] for h in result]
                if side == "ours":
                    worst = max(abs(a - b) for a, b in zip(scores, original_scores))
                else:
                    original_scores = scores
            print(f"run {run + 1}: original {seconds['original'][-1]:.1f} s ({cpu['original'][-1]:.1f} s CPU), "
                  f"this project {seconds['ours'][-1]:.1f} s ({cpu['ours'][-1]:.1f} s CPU)", flush=True)
            load.append(os.getloadavg()[0])
    different = [i for i, (a, b) in enumerate(zip(hyps["original"], hyps["ours"])) if a != b]
    if different:
        print(f"clips {different}: the hypotheses differ from the original's")
        return 1
    lengths = [len(h) for h in hyps["ours"]]
    orig, ours = statistics.median(seconds["original"]), statistics.median(seconds["ours"])
    orig_cpu, ours_cpu = statistics.median(cpu["original"]), statistics.median(cpu["ours"])
    print("\n| beam | clips | original: wall (CPU) s | this project: wall (CPU) s | ratio: wall (CPU) |")
    print("| --- | --- | --- | --- | --- |")
    print(f"| {beam} | {len(items)} | {orig:.1f} ({orig_cpu:.1f}) | {ours:.1f} ({ours_cpu:.1f}) | "
          f"{ours / orig:.2f}x ({ours_cpu / orig_cpu:.2f}x) |")
    print(f"\nmedians of {args.repeats} whole processes each (CPU: user + system seconds of the process, "
          f"which other work on the machine disturbs less); identical hypotheses ({min(lengths)}-"
          f"{max(lengths)} tokens; largest score difference {worst:.1e}); load average (1 min) "
          f"{min(load):.1f}-{max(load):.1f} ({os.cpu_count()} CPUs)")
    return 0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--modality", default="video", choices=["video", "audio"])
    p.add_argument("--beams", type=int, nargs="+", default=[40, 10], help="Beam sizes. (Default: 40 10)")
    p.add_argument("--batch-size", type=int, default=8, help="Utterances decoded together. (Default: 8)")
    p.add_argument("--num-utts", type=int, default=None,
                   help="Utterances. (Default: 16; 8 with --original-checkout)")
    p.add_argument("--min-seconds", type=float, default=1.5, help="Shortest utterance. (Default: 1.5)")
    p.add_argument("--max-seconds", type=float, default=3.0, help="Longest utterance. (Default: 3.0)")
    p.add_argument("--max-len-ratio", type=float, default=0.2,
                   help="Hypothesis length cap per encoder frame; 0 = the encoder length. (Default: 0.2)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads. (Default: torch's default)")
    p.add_argument("--device", default="cpu", help="cpu or cuda. (Default: cpu)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", default=None, help="Also write the table's numbers to this JSON file.")
    p.add_argument("--tiny", action="store_true", help="A tiny model instead of the full-size one (tests).")
    p.add_argument("--original-checkout", default=None,
                   help="A checkout of the original Auto-AVSR code: time whole decoding processes against it.")
    p.add_argument("--repeats", type=int, default=3, help="Alternating runs per side with --original-checkout. "
                   "(Default: 3)")
    p.add_argument("--child", choices=["ours", "original"], help=argparse.SUPPRESS)
    p.add_argument("--child-folder", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if args.child:
        import json

        results = (child_ours if args.child == "ours" else child_original)(args, args.child_folder)
        with open(os.path.join(args.child_folder, f"{args.child}.json"), "w") as f:
            json.dump(results, f)
        return 0
    if args.original_checkout and args.num_utts is None:
        args.num_utts = 8
    args.num_utts = args.num_utts or 16
    if args.num_utts < 1 or args.batch_size < 1 or not 0 < args.min_seconds <= args.max_seconds or args.repeats < 1:
        p.error("--num-utts, --batch-size and --repeats must be >= 1 and 0 < --min-seconds <= --max-seconds")
    if device.type == "cuda" and not torch.cuda.is_available():
        p.error("--device cuda: no CUDA device (torch.cuda.is_available() is False)")
    if args.original_checkout:
        if args.tiny or args.json:
            p.error("--tiny and --json do not apply to --original-checkout")
        return versus_original(args)
    # (after the original's child process branched off: it imports its own ``espnet``)
    from espnet.asr.evaluate import length_sorted_batches
    from espnet.asr.recognizer import build_beam_search

    torch.manual_seed(args.seed)
    model = legacy_model(args.modality, tiny=args.tiny).to(device)
    n_params = sum(p.numel() for p in model.parameters())
    lo, hi = round(args.min_seconds * 25), round(args.max_seconds * 25)
    frames = clip_frames(args.num_utts, args.min_seconds, args.max_seconds)
    items = [{k: v.to(device) for k, v in item.items()} for item in make_utterances(args.modality, frames, args.seed)]
    batches = length_sorted_batches(frames, args.batch_size)
    media_seconds = sum(frames) / 25
    cap = f"{args.max_len_ratio} x frames" if args.max_len_ratio > 0 else "the encoder length (worst case)"
    load = os.getloadavg()[0]
    report = {"device": str(device), "device_name": torch.cuda.get_device_name(device) if device.type == "cuda"
              else "cpu", "torch": torch.__version__, "modality": args.modality, "tiny": args.tiny,
              "params": n_params, "num_utts": args.num_utts, "media_seconds": media_seconds,
              "max_len_ratio": args.max_len_ratio, "batch_size": args.batch_size, "rows": []}
    print(f"{'tiny' if args.tiny else 'full-size'} {args.modality} model: {n_params / 1e6:.1f} M parameters; "
          f"{args.num_utts} utterances of "
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
            for size in (1, n):
                report["rows"].append({
                    "beam": beam, "batch": size, "utt_per_s": args.num_utts / wall[size],
                    "rtf": wall[size] / media_seconds, "seconds": wall[size], "cpu_seconds": cpu[size],
                    "stage_seconds": dict(clocks[size].seconds), "speedup": wall[1] / wall[size],
                    "identical_hypotheses": True, "max_score_difference": worst})  # compare() exits otherwise
            print(row(beam, 1, args.num_utts, media_seconds, clocks[1], wall[1]))
            print(row(beam, n, args.num_utts, media_seconds, clocks[n], wall[n],
                      f"{wall[1] / wall[n]:.2f}x ({cpu[1] / cpu[n]:.2f}x in CPU time), identical hypotheses "
                      f"(max score difference {worst:.1e})"))
    rows_1, rows_n = max(args.beams), max(args.beams) * args.batch_size
    ceiling = {rows_1: matmul_gflops(rows_1, device), rows_n: matmul_gflops(rows_n, device)}
    report["matmul_gflops"] = {str(rows): value for rows, value in ceiling.items()}
    print(f"\nmatmul ceiling: Linear(768, 3072) at {rows_1} rows {ceiling[rows_1]:.0f} GFLOP/s, at "
          f"{rows_n} rows {ceiling[rows_n]:.0f} GFLOP/s (the decoder's matrices, one utterance's "
          f"beam vs the batch's)")
    print(f"load average (1 min) {load:.1f} at the start, {os.getloadavg()[0]:.1f} at the end "
          f"({os.cpu_count()} CPUs); RTF = decode seconds / media seconds")
    if args.json:
        from espnet.utils.atomic_write import atomic_json_dump

        atomic_json_dump(report, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
