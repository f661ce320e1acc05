"""``eval.py``'s command line: decode a test label list with a model and print the corpus WER
(the model from :func:`espnet.asr.pretrained.resolve_pretrained`, the decoding from
:func:`espnet.asr.evaluate.evaluate`)."""

import argparse
import logging
import math
import sys
from typing import List, Optional

DESCRIPTION = "Decode a test label list with a trained checkpoint and print the corpus WER."


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    from espnet.training.cli_args import (add_failure_args, add_generate_args, add_model_args,
                                         add_paraformer_decoding_args, add_tokenizer_args)
    from espnet.training.cpu_threads import IDLE, num_threads_flag

    p = argparse.ArgumentParser(prog="eval.py", description=DESCRIPTION)
    p.add_argument("--root-dir", required=True, help="Root of the preprocessed dataset.")
    p.add_argument("--test-file", required=True, help="Test label list (in ROOT/labels, or a path).")
    p.add_argument("--pretrained-model-path", default=None,
                   help="model_avg_*.pth (plain state dict), a Lightning .ckpt (original or ours) or a folder "
                        "written by python -m espnet.training.export --hf-dir (safetensors). Without it, "
                        "the model is built from the model flags and must be pretrained in every part (zero-shot, "
                        "e.g. --audio-encoder whisper --decoder whisper-decoder --encoder none).")
    p.add_argument("--decode-snr-target", type=float, default=None,
                   help="Add babble noise at this SNR in dB to the audio (default: clean).")
    p.add_argument("--noise-file", default=None,
                   help="Noise wav for --decode-snr-target. (Default: ROOT/babble.wav if present, else the "
                        "built-in procedural babble)")
    p.add_argument("--drop-stream", default=None, action="append", choices=["video", "audio"],
                   help="Audio-visual models: decode without this stream (its learned stand-in takes its place), "
                        "e.g. to see how the model copes when the camera or the microphone fails. "
                        "(Default: both streams)")
    p.add_argument("--decode-mode", default="decoder", choices=["decoder", "ctc-greedy"],
                   help="decoder: the model's decoder (joint CTC/attention beam search; a Paraformer's one parallel "
                        "pass); ctc-greedy: the CTC head alone, best path (argmax per frame, repeats merged, blanks "
                        "dropped), the cheapest baseline, for a model whose CTC head was trained. (Default: decoder)")
    add_paraformer_decoding_args(p)
    p.add_argument("--beam-size", type=int, default=40, help="Beam size. (Default: 40)")
    p.add_argument("--batch-size", type=int, default=None,
                   help="Utterances of similar length decoded together; hypotheses and scores equal one-at-a-time "
                        "decoding. Memory grows with N (beam x N hypotheses with their attention caches); on a "
                        "2-core CPU the speed-up is flat from 4 to 16. (Default: 8)")
    p.add_argument("--ctc-weight", type=float, default=0.1,
                   help="CTC weight in joint CTC/attention beam search (every decoder; used when the model's CTC "
                        "head was trained, i.e. trained with --ctc-weight > 0). (Default: 0.1)")
    p.add_argument("--output-json", default=None, help="Write WER and per-utterance results here.")
    p.add_argument("--seed", type=int, default=0, help="Seed of the test-time noise. (Default: 0)")
    p.add_argument("--num-workers", type=int, default=1, help="DataLoader workers. (Default: 1)")
    p.add_argument("--num-threads", type=num_threads_flag, default=0, metavar="N|idle",
                   help="PyTorch threads when decoding on the CPU; 0 = the environment's OMP_NUM_THREADS if set, "
                        "else all the cores this process may use (as PyTorch); idle = the cores other work leaves "
                        "idle, measured over half a second at the start. (Default: 0)")
    p.add_argument("--accelerator", default="auto", choices=["auto", "cpu", "gpu", "cuda"],
                   help="Device for decoding. (Default: auto)")
    p.add_argument("--precision", default="checkpoint", choices=["checkpoint", "auto", "32", "bf16-mixed"],
                   help="checkpoint: as the model was trained (float32 for the original Auto-AVSR's and for models "
                        "trained in float32, so a checkpoint scores the same WER as before); 32: pretrained weights "
                        "in float32; bf16-mixed: pretrained weights in bfloat16 and decoding under bf16 autocast; "
                        "auto: bf16-mixed where the device computes bf16 natively (a CUDA GPU with bf16 support; a "
                        "CPU with avx512_bf16 or amx_bf16), else 32. The choice is printed. (Default: checkpoint)")
    p.add_argument("--wer-normalizer", default="lower", choices=["lower", "whisper"],
                   help="Text normalisation before scoring: lower = case-insensitive words (Auto-AVSR); whisper = "
                        "Whisper's English normaliser (punctuation, numbers, spellings). (Default: lower)")
    from espnet.asr.fallback import add_guard_args, check_guard_args

    add_guard_args(p, "none")
    add_failure_args(p, "decoding")
    add_model_args(p)
    add_tokenizer_args(p)
    add_generate_args(p)
    args = p.parse_args(argv)
    if args.decode_snr_target is not None and not math.isfinite(args.decode_snr_target):
        p.error(f"--decode-snr-target must be a finite number of dB, got {args.decode_snr_target}")
    if args.drop_stream and len(args.drop_stream) > 1:
        if len(set(args.drop_stream)) > 1:
            p.error("--drop-stream video and --drop-stream audio: dropping both streams leaves nothing to decode")
        p.error(f"--drop-stream {args.drop_stream[0]} is given {len(args.drop_stream)} times; give it once")
    args.drop_stream = args.drop_stream[0] if args.drop_stream else None
    if args.beam_size < 1:
        p.error(f"--beam-size must be >= 1, got {args.beam_size}")
    if args.num_threads != IDLE and args.num_threads < 0:
        p.error(f"--num-threads must be >= 0 (0 = default) or idle, got {args.num_threads}")
    if args.batch_size is not None and args.batch_size < 1:
        p.error(f"--batch-size must be >= 1, got {args.batch_size}")
    if not 0.0 <= args.ctc_weight <= 1.0:
        p.error(f"--ctc-weight must be in [0, 1], got {args.ctc_weight}")
    try:
        check_guard_args(args)
    except ValueError as err:
        p.error(str(err))
    return args


def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.debug else logging.INFO, format="%(message)s")
    from espnet.training.cli_errors import run_cli

    return run_cli(lambda: decode(args), debug=args.debug)


def decode(args: argparse.Namespace) -> int:
    """Decode ``--test-file`` and print the WER; raises on bad input (see ``run_cli``)."""
    from datamodule.data_module import label_path
    from datamodule.preflight import run_preflight
    from espnet.asr.evaluate import DEFAULT_BATCH_SIZE, check_output_file, evaluate, write_json
    from espnet.asr.fallback import length_limit_name, resolve_fallback
    from espnet.asr.pretrained import Recognizer, decoding_device, resolve_for_decoding
    from espnet.asr.repetition import repetition_warning
    from espnet.nets.pytorch_backend.decoder.base_decoder import DecodeOptions, nar_candidates_refusal
    from espnet.training.cli_args import paraformer_decoding_values

    if args.output_json:
        check_output_file(args.output_json, "--output-json")  # before the decoding, not after it
    nar = paraformer_decoding_values(args)
    refusal = nar_candidates_refusal(**nar)  # before loading: the values alone
    if refusal:
        raise ValueError(refusal)
    device = decoding_device(args.accelerator)
    resolved = resolve_for_decoding(args.pretrained_model_path, args, device)
    config, tokenizer = resolved.config, resolved.tokenizer
    odim = tokenizer.odim if tokenizer is not None else None
    read = config.modality
    if args.drop_stream:
        if config.modality != "audiovisual":
            raise ValueError(f"--drop-stream {args.drop_stream}: only an audio-visual model has another stream to "
                             f"decode from; this is {config.describe()}")
        if not config.missing_stream_embeddings:
            raise ValueError(f"--drop-stream {args.drop_stream}: {args.pretrained_model_path} has no embeddings for "
                             f"a missing stream (its config was written before they existed); it needs both streams")
        read = "audio" if args.drop_stream == "video" else "video"  # what the pre-flight check must find
    skip_lines = run_preflight(args.root_dir, [(args.test_file, label_path(args.root_dir, args.test_file), None)],
                               read, odim, skip_invalid=args.skip_invalid, need_transcript=tokenizer is None, tokenizer=tokenizer)
    if resolved.state is None and args.decode_mode == "ctc-greedy":
        raise ValueError("--decode-mode ctc-greedy decodes with the model's trained CTC head: give "
                         "--pretrained-model-path (without it the CTC head is untrained)")
    model = Recognizer.from_resolved(resolved).model
    refusal = nar_candidates_refusal(decoder=config.decoder, mode=args.decode_mode,
                                     model=args.pretrained_model_path or "the model", **nar)
    if refusal:
        raise ValueError(refusal)
    if resolved.state is None and args.ctc_weight > 0:  # a CTC head is never pretrained
        print(f"note: without --pretrained-model-path the model has no trained CTC head: --ctc-weight "
              f"{args.ctc_weight:g} is not used (decoding with the decoder alone)", file=sys.stderr)
        args.ctc_weight = 0.0
    if device == "cpu":
        from espnet.training.cpu_threads import apply_num_threads

        apply_num_threads(args.num_threads)
    options = DecodeOptions(beam_size=args.beam_size, ctc_weight=args.ctc_weight, max_new_tokens=args.max_new_tokens,
                            penalty=args.penalty, mode=args.decode_mode, **nar)
    result = evaluate(model, tokenizer, args.root_dir, args.test_file, options, snr_target=args.decode_snr_target,
                      noise_file=args.noise_file, seed=args.seed, num_workers=args.num_workers, device=device,
                      wer_normalizer=args.wer_normalizer, skip_lines=skip_lines.get(args.test_file, frozenset()),
                      batch_size=args.batch_size or DEFAULT_BATCH_SIZE, drop_stream=args.drop_stream,
                      skip_invalid=args.skip_invalid, guard=args.guard,
                      fallback=resolve_fallback(args.fallback, args.fallback_best_of,
                                                resolved.state is None and config.decoder == "whisper-decoder"))
    print(f"decoded {result.num_utterances} utterances in {result.seconds:.1f} s "
          f"({result.num_utterances / max(result.seconds, 1e-9):.2f} utt/s, real-time factor "
          f"{result.real_time_factor:.3f} for {result.audio_seconds:.1f} s of media); "
          f"{result.errors} errors / {result.ref_words} words")
    if result.fallback_used:
        print(f"fallback: {result.fallback_used} hypotheses decoded again by sampling (--fallback-temperatures)")
    warning = repetition_warning(result.checks, "hypotheses", args.guard,
                                 length_limit_name(model, args.max_new_tokens))
    if warning:
        print(warning, file=sys.stderr)
    for row in result.left_out:
        print(f"left out (--skip-invalid): {row['reason']}")
    if args.output_json:
        print(f"results: {args.output_json}")
    print(f"WER: {result.wer}")  # before the file is written: a failed write does not lose it
    if args.output_json:
        write_json(result, args.output_json)
    return 0
