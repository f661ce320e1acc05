"""Zero-shot Whisper (pretrained encoder + decoder, nothing trained) on a label list:
real-length encoding vs padding each clip with silence to S seconds, side by side.

For every padding setting the same utterances are decoded one at a time (greedy by
default; the beam search eval.py runs, without a CTC head) and the script prints the WER
after Whisper's English text normaliser, the share of hypotheses that stopped at
``<|endoftext|>`` before ``--max-new-tokens``, the share the repetition guard finds repeating
(:mod:`espnet.asr.repetition`), the decoding time and the real-time factor (decode seconds /
audio seconds). ``--fallback`` adds a row per setting with openai-whisper's temperature
fallback (:mod:`espnet.asr.fallback`). ``--pad-seconds 30`` is exactly Whisper's own input
(``WhisperFeatureExtractor``; greedy, the tokens of its ``generate``); ``0`` runs the
encoder on the real length only.

    python benchmarks/whisper_zero_shot.py --root-dir exp/whisper_ft/data --test-file test.csv \\
        --model-dir ../shared/models/whisper-tiny.en --pad-seconds 0 5 10 30
    # real recorded speech (python -m preparation.recorded_speech --out exp/recorded_speech)
    python benchmarks/whisper_zero_shot.py --root-dir exp/recorded_speech --pad-seconds 0 5 30 --fallback
"""

import argparse
import json
import os
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:
    sys.path.insert(0, REPO)


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--root-dir", required=True, help="Dataset root (labels under ROOT/labels).")
    p.add_argument("--test-file", default="test.csv", help="Label list with transcripts. (Default: test.csv)")
    p.add_argument("--model-dir", default=os.path.join(os.path.dirname(REPO), "shared", "models", "whisper-tiny.en"),
                   help="Local Whisper directory (Hugging Face layout). (Default: ../shared/models/whisper-tiny.en)")
    p.add_argument("--pad-seconds", type=float, nargs="+", default=[0.0, 5.0, 10.0, 30.0],
                   help="Padding settings to compare (0 = real length). (Default: 0 5 10 30)")
    p.add_argument("--beam-size", type=int, default=1, help="(Default: 1, greedy)")
    p.add_argument("--max-new-tokens", type=int, default=64, help="(Default: 64)")
    p.add_argument("--limit", type=int, default=None, help="Decode only the first N utterances.")
    p.add_argument("--fallback", action="store_true",
                   help="Also decode each setting with the temperature fallback (0.2, ..., 1.0, best of 5).")
    p.add_argument("--output-json", default=None, help="Write the table and every hypothesis here.")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch
    from tqdm import tqdm

    from datamodule.data_module import build_dataset
    from espnet.asr.evaluate import corpus_wer, text_normalizer
    from espnet.asr.fallback import FallbackOptions, decode_guarded
    from espnet.asr.recognizer import DecodeOptions, batch_of_one
    from espnet.nets.pytorch_backend.e2e_asr_conformer import E2E
    from espnet.nets.pytorch_backend.model_config import ModelConfig

    normalize = text_normalizer("whisper", [args.model_dir])
    options = DecodeOptions(beam_size=args.beam_size, ctc_weight=0.0, max_new_tokens=args.max_new_tokens)
    rows, details = [], {}
    with open(os.path.join(args.model_dir, "config.json"), encoding="utf8") as handle:
        d_model = int(json.load(handle)["d_model"])  # identity projections: Whisper's own pair
    runs = [(pad, fb) for pad in args.pad_seconds for fb in ((False, True) if args.fallback else (False,))]
    for pad, fb in runs:
        fallback = FallbackOptions() if fb else None
        config = ModelConfig(odim=None, vision_encoder=None, audio_encoder="whisper", decoder="whisper-decoder",
                             audio_encoder_conf={"model_name": args.model_dir, "pad_seconds": pad},
                             decoder_conf={"model_name": args.model_dir}, encoder="none", adim=d_model)
        model = E2E(config).eval()
        assert not model.untrained_parts()
        dataset = build_dataset(args.root_dir, args.test_file, "test", "audio",
                                audio_utterance_norm=model.audio_utterance_norm)
        n = len(dataset) if args.limit is None else min(args.limit, len(dataset))
        refs, hyps, stopped, repeating, resampled, audio_s, decode_s = [], [], 0, 0, 0, 0.0, 0.0
        for i in tqdm(range(n), desc=f"pad {pad:g} s" + (" fallback" if fb else ""), unit="utt"):
            item = dataset[i]
            refs.append(item["text"])
            audio_s += item["audio"].size(0) / 16000.0
            start = time.perf_counter()
            with torch.no_grad():
                enc, enc_len = model.encode(batch_of_one(item))
                hyp = decode_guarded(model, enc, enc_len, options, fallback=fallback)[0]
            decode_s += time.perf_counter() - start
            stopped += not hyp.decoded.hit_length_limit
            repeating += hyp.check.repeating
            resampled += hyp.temperature > 0
            hyps.append(hyp.text)
        wer = corpus_wer(refs, hyps, normalize)["wer"]
        rows.append({"pad_seconds": pad, "fallback": fb, "wer": wer, "stopped": stopped / n, "repeating": repeating / n,
                     "resampled": resampled, "seconds": decode_s, "rtf": decode_s / audio_s, "utterances": n})
        details[f"{pad:g}" + (" fallback" if fb else "")] = [{"reference": r, "hypothesis": h} for r, h in zip(refs, hyps)]
    base = next((r for r in rows if r["pad_seconds"] == 30.0 and not r["fallback"]), rows[-1])
    print(f"\nzero-shot {os.path.basename(os.path.normpath(args.model_dir))} on {args.test_file} "
          f"({rows[0]['utterances']} utterances, beam {args.beam_size}, WER after Whisper's English normaliser)")
    print(f"{'input':>18} | {'fallback':>8} | {'WER %':>6} | {'stopped %':>9} | {'repeating %':>11} | "
          f"{'resampled':>9} | {'decode s':>8} | {'RTF':>6} | speed vs 30 s")
    for r in rows:
        name = "real length" if r["pad_seconds"] == 0 else f"padded to {r['pad_seconds']:g} s"
        print(f"{name:>18} | {'on' if r['fallback'] else 'off':>8} | {100 * r['wer']:6.1f} | {100 * r['stopped']:9.1f} | "
              f"{100 * r['repeating']:11.1f} | {r['resampled']:9d} | {r['seconds']:8.1f} | {r['rtf']:6.3f} | "
              f"{base['seconds'] / r['seconds']:.2f}x")
    if args.output_json:
        with open(args.output_json, "w", encoding="utf8") as handle:
            json.dump({"rows": rows, "hypotheses": details}, handle, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
