"""Decoding speed of a pretrained Whisper pair (``--audio-encoder whisper --decoder
whisper-decoder --elayers 0``): the project's beam search (the decoder as a batch scorer on
its KV cache, what ``eval.py`` runs) vs Whisper's own ``generate``, side by side in one run
on the same encoder outputs.

The clips are eSpeak utterances of the project's generated corpus (``--num-clips``, written
to a temporary directory), or the first ones of ``--root-dir/--test-file``. They are
encoded once; then each repeat decodes them with both paths in turn (the order alternating
between repeats, so a machine shared with other work slows both alike), all clips in one
batch and one at a time, and the script prints the median seconds per path and the ratio.
With beam 1 the token ids of both paths must be equal (checked; the run fails otherwise).

    python benchmarks/hf_decoding_speed.py --num-clips 6 --repeats 5 --beams 1 4
"""

import argparse
import os
import statistics
import sys
import tempfile
import time
from typing import Callable, Dict, List

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:
    sys.path.insert(0, REPO)


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model-dir", default=os.path.join(os.path.dirname(REPO), "shared", "models", "whisper-tiny.en"),
                   help="Local Whisper directory (Hugging Face layout). (Default: ../shared/models/whisper-tiny.en)")
    p.add_argument("--root-dir", default=None, help="Dataset root with the clips (default: generate eSpeak clips).")
    p.add_argument("--test-file", default="test.csv", help="Label list under --root-dir. (Default: test.csv)")
    p.add_argument("--num-clips", type=int, default=6, help="Clips to decode. (Default: 6)")
    p.add_argument("--pad-seconds", type=float, default=30.0,
                   help="Pad every clip with silence to this many seconds before the encoder (30 = Whisper's own "
                        "input; 0 = real length). (Default: 30)")
    p.add_argument("--beams", type=int, nargs="+", default=[1, 4], help="Beam sizes. (Default: 1 4)")
    p.add_argument("--max-new-tokens", type=int, default=64, help="(Default: 64)")
    p.add_argument("--repeats", type=int, default=3, help="Timed repeats per path (median). (Default: 3)")
    p.add_argument("--threads", type=int, default=1, help="torch threads. (Default: 1)")
    args = p.parse_args(argv)
    if args.num_clips < 1 or args.repeats < 1 or args.threads < 1 or min(args.beams) < 1:
        p.error("--num-clips, --repeats, --threads and --beams must be >= 1")
    return args


def load_clips(args: argparse.Namespace, audio_norm: bool):
    """Unbatched ``audio`` ``(S, 1)`` items of the first ``--num-clips`` utterances."""
    from datamodule.data_module import build_dataset

    root, test_file = args.root_dir, args.test_file
    if root is None:
        from preparation.synthetic_av import generate, join_splits

        root = tempfile.mkdtemp(prefix="hf_decoding_speed_")
        paths = generate(root, num_utts=max(args.num_clips, 3), num_speakers=3, seed=3, progress=False,
                         babble_seconds=20.0)
        test_file = join_splits(paths)
    dataset = build_dataset(root, test_file, "test", "audio", audio_utterance_norm=audio_norm)
    n = min(args.num_clips, len(dataset))
    return [{"audio": dataset[i]["audio"]} for i in range(n)]


def timed(run: Callable[[], object], seconds: List[float]) -> object:
    """``run()``, its wall seconds appended to ``seconds``."""
    start = time.perf_counter()
    out = run()
    seconds.append(time.perf_counter() - start)
    return out


def main(argv=None) -> int:
    args = parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import json

    import torch

    from espnet.asr.recognizer import DecodeOptions, decode_memory, encode_utterances
    from espnet.nets.pytorch_backend.e2e_asr_conformer import E2E
    from espnet.nets.pytorch_backend.model_config import ModelConfig

    torch.set_num_threads(args.threads)
    with open(os.path.join(args.model_dir, "config.json"), encoding="utf8") as handle:
        d_model = int(json.load(handle)["d_model"])
    config = ModelConfig(odim=None, vision_encoder=None, audio_encoder="whisper", decoder="whisper-decoder",
                         audio_encoder_conf={"model_name": args.model_dir, "pad_seconds": args.pad_seconds},
                         decoder_conf={"model_name": args.model_dir}, elayers=0, adim=d_model)
    model = E2E(config).eval()
    items = load_clips(args, model.audio_utterance_norm)
    with torch.no_grad():
        memory, lengths = encode_utterances(model, items)
    singles = [(memory[i:i + 1, : int(lengths[i])], lengths[i:i + 1]) for i in range(len(items))]
    seconds_audio = sum(item["audio"].size(0) for item in items) / 16000.0
    decoder = model.decoder

    def generate(mem, lens, beam):
        return decoder.generate_ids(mem, lens, beam_size=beam, max_new_tokens=args.max_new_tokens)

    def search(mem, lens, beam):
        options = DecodeOptions(beam_size=beam, ctc_weight=0.0, max_new_tokens=args.max_new_tokens)
        return [hyp.token_ids for hyp in decode_memory(model, mem, lens, options)]

    paths = {"generate": generate, "beam search": search}
    print(f"{os.path.basename(os.path.normpath(args.model_dir))}: {len(items)} clips, {seconds_audio:.1f} s of audio, "
          f"encoder input padded to {args.pad_seconds:g} s, {args.threads} thread(s), median of {args.repeats}")
    print(f"{'beam':>4} | {'mode':>11} | {'generate s':>10} | {'search s':>8} | {'search/generate':>15} | ids equal")
    with torch.no_grad():
        for beam in args.beams:
            for mode in ("batch", "one by one"):
                times: Dict[str, List[float]] = {name: [] for name in paths}
                ids: Dict[str, List[List[int]]] = {}
                for repeat in range(args.repeats + 1):  # the first round warms up, untimed
                    order = list(paths) if repeat % 2 == 0 else list(paths)[::-1]
                    for name in order:
                        def run(fn=paths[name]):
                            if mode == "batch":
                                return fn(memory, lengths, beam)
                            return [row for mem, lens in singles for row in fn(mem, lens, beam)]

                        ids[name] = timed(run, times[name] if repeat else [])
                g, s = statistics.median(times["generate"]), statistics.median(times["beam search"])
                same = ids["generate"] == ids["beam search"]
                print(f"{beam:>4} | {mode:>11} | {g:10.2f} | {s:8.2f} | {s / g:15.2f} | {same}")
                if beam == 1 and not same:
                    print(f"error: greedy ids differ: generate {ids['generate']} vs search {ids['beam search']}",
                          file=sys.stderr)
                    return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
