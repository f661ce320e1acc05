"""Speed of the pre-flight check of a label list, side by side with decoding the same clips.

    python benchmarks/preflight_speed.py --num-utts 600

Generates a toy corpus (25 fps 96x96 mp4 + 16 kHz wav, 1.6-2.6 s clips) and, in one run,
times for its label list (audio-visual: both files of every clip):

* the pre-flight check without a cache (every header read),
* the same check with the cache beside the CSV (only ``stat`` per file),
* decoding the clips as training does (``load_video`` + ``load_audio``), on a subset.

It prints clips per second for each and the ratios.
"""

import argparse
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--num-utts", type=int, default=600, help="Clips in the generated corpus. (Default: 600)")
    p.add_argument("--decode-utts", type=int, default=100, help="Clips decoded for comparison. (Default: 100)")
    p.add_argument("--out", default=None, help="Corpus directory (default: a temporary one).")
    args = p.parse_args(argv)

    from datamodule.label_list import read_label_list
    from datamodule.media import load_audio, load_video
    from datamodule.preflight import CACHE_SUFFIX, check_label_list
    from preparation.toy_corpus import generate

    out = args.out or tempfile.mkdtemp(prefix="preflight_speed_")
    labels = os.path.join(out, "labels", "all.csv")
    if not os.path.isfile(labels):
        paths = generate(out, num_utts=args.num_utts, num_speakers=6, seed=0, progress=False)
        with open(labels, "w", encoding="utf8") as handle:
            for split in ("train", "val", "test"):
                with open(paths[split], encoding="utf8") as part:
                    handle.write(part.read())
    if os.path.exists(labels + CACHE_SUFFIX):
        os.remove(labels + CACHE_SUFFIX)
    check_label_list(out, labels, "audiovisual", use_cache=False)  # warm the page cache and PyAV

    cold = check_label_list(out, labels, "audiovisual")
    warm = check_label_list(out, labels, "audiovisual")
    assert not cold.problems and cold.probed == 2 * cold.num_lines and warm.cached == 2 * warm.num_lines
    items = read_label_list(labels)[: args.decode_utts]
    start = time.perf_counter()
    for utt in items:
        path = os.path.join(out, utt.dataset, utt.rel_path)
        load_video(path)
        load_audio(path[:-4] + ".wav")
    decode_rate = len(items) / (time.perf_counter() - start)
    cold_rate, warm_rate = cold.num_lines / cold.seconds, warm.num_lines / warm.seconds
    print(f"corpus: {out} ({cold.num_lines} clips, mp4 + wav each)")
    print(f"pre-flight, headers read:   {cold_rate:8.0f} clips/s ({cold.seconds:.2f} s)")
    print(f"pre-flight, from the cache: {warm_rate:8.0f} clips/s ({warm.seconds:.2f} s)")
    print(f"decoding (load_video + load_audio, {len(items)} clips): {decode_rate:8.1f} clips/s")
    print(f"headers vs decoding: {cold_rate / decode_rate:.1f}x faster; cache vs headers: {warm_rate / cold_rate:.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
