"""``transcribe.py``'s command line: recordings in (any file PyAV opens, a directory, or a list
file of them), text and subtitles out (``.txt``, ``.json``, ``.srt``, ``.vtt`` per input).

Each input is decoded to the model's rates, cut into segments (voice activity where there is
audio, overlapping windows for video alone) and the segments are decoded in batches. A bad
input is one line ``error: FILE: what is wrong`` on stderr; the other inputs are still
transcribed and the exit status is 2. Nothing is written over an existing output without
``--overwrite``."""

import argparse
import logging
import os
import sys
import time
from typing import Dict, List, Optional, Tuple

DESCRIPTION = "Transcribe recordings (video or audio of any format and length) into txt, json, srt and vtt."
MEDIA_EXTENSIONS = (".mp4", ".mkv", ".mov", ".avi", ".webm", ".wav", ".flac", ".mp3", ".m4a", ".ogg", ".opus",
                    ".aac", ".mpg", ".mpeg", ".ts", ".m4v", ".wma", ".3gp")
LIST_EXTENSIONS = (".list", ".lst", ".txt")


def add_transcription_args(p: argparse.ArgumentParser) -> None:
    """The flags ``transcribe.py`` and the web service share: the model (``--model`` or the model
    flags of ``eval.py``), decoding, segmentation and the device."""
    from espnet.training.cli_args import (add_generate_args, add_model_args, add_paraformer_decoding_args,
                                         add_tokenizer_args)
    from espnet.training.cpu_threads import num_threads_flag

    p.add_argument("--model", default=None,
                   help="What eval.py decodes: a checkpoint (.ckpt, model_avg_*.pth), an export folder or a legacy "
                        "Auto-AVSR .pth (with its model flags). Without it, the model is built from the model flags "
                        "and must be pretrained in every part (e.g. --audio-encoder whisper --decoder "
                        "whisper-decoder --elayers 0).")
    p.add_argument("--drop-stream", default=None, choices=["video", "audio"],
                   help="Audio-visual models: decode without this stream (its learned stand-in takes its place), e.g. "
                        "to see what the lips alone give. (Default: both streams)")
    p.add_argument("--beam-size", type=int, default=10, help="Beam size. (Default: 10)")
    p.add_argument("--ctc-weight", type=float, default=None,
                   help="CTC weight of the joint CTC/attention beam search (every decoder; used when the CTC head was trained). "
                        "(Default: the model's training weight)")
    add_paraformer_decoding_args(p)
    p.add_argument("--batch-size", type=int, default=8, help="Segments decoded together. (Default: 8)")
    p.add_argument("--max-segment-seconds", type=float, default=0.0,
                   help="Longest segment; longer speech is split at its quietest 10 ms. "
                        "(Default: 20, 30 for a Whisper decoder)")
    p.add_argument("--min-silence-seconds", type=float, default=0.5,
                   help="Pauses shorter than this do not end a segment. (Default: 0.5)")
    p.add_argument("--vad-threshold", type=float, default=0.5,
                   help="Speech probability above which Silero VAD calls a frame speech. (Default: 0.5)")
    p.add_argument("--video-window-seconds", type=float, default=10.0,
                   help="Video without audio: window length. (Default: 10)")
    p.add_argument("--video-overlap-seconds", type=float, default=2.0,
                   help="Video without audio: overlap of consecutive windows. (Default: 2)")
    p.add_argument("--accelerator", default="auto", choices=["auto", "cpu", "gpu", "cuda"],
                   help="Device for decoding. (Default: auto)")
    p.add_argument("--num-threads", type=num_threads_flag, default=0, metavar="N|idle",
                   help="PyTorch threads on the CPU; 0 = the environment's OMP_NUM_THREADS if set, else all the "
                        "cores this process may use (as PyTorch); idle = the cores other work leaves idle, measured "
                        "at the start. (Default: 0)")
    p.add_argument("--precision", default="checkpoint", choices=["checkpoint", "auto", "32", "bf16-mixed"],
                   help="checkpoint: as the model was trained (else 32); 32: float32; bf16-mixed: pretrained "
                        "weights in bfloat16 and decoding under bf16 autocast; auto: bf16-mixed where the device "
                        "computes bf16 natively, else 32. The choice is printed. (Default: checkpoint)")
    p.add_argument("--previous-text", default="auto", choices=["auto", "on", "off"],
                   help="Whisper decoders: decode each segment after the text of the segments before it "
                        "(<|startofprev|>, openai-whisper's condition_on_previous_text); segments are then decoded "
                        "one at a time in time order. auto = on for a pretrained Whisper decoder used zero-shot (no "
                        "--model; it lowered the WER on the recorded speech measured, see docs/transcription.md), off "
                        "otherwise (a fine-tuned decoder never saw such a prompt). (Default: auto)")
    p.add_argument("--debug", action="store_true", help="Debug-level logging; tracebacks on errors.")
    from espnet.asr.fallback import add_guard_args

    add_guard_args(p, "auto")
    add_model_args(p)
    add_tokenizer_args(p)
    add_generate_args(p)


def check_transcription_args(p: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Refuse bad values of :func:`add_transcription_args`'s flags (``p.error``: one line, exit 2)."""
    from espnet.nets.pytorch_backend.decoder.base_decoder import nar_candidates_refusal
    from espnet.training.cli_args import paraformer_decoding_values
    from espnet.training.cpu_threads import IDLE

    if args.beam_size < 1:
        p.error(f"--beam-size must be >= 1, got {args.beam_size}")
    if args.batch_size < 1:
        p.error(f"--batch-size must be >= 1, got {args.batch_size}")
    refusal = nar_candidates_refusal(**paraformer_decoding_values(args))
    if refusal:
        p.error(refusal)
    if args.ctc_weight is not None and not 0.0 <= args.ctc_weight <= 1.0:
        p.error(f"--ctc-weight must be in [0, 1], got {args.ctc_weight}")
    if args.max_segment_seconds < 0 or args.min_silence_seconds < 0 or \
            (args.num_threads != IDLE and args.num_threads < 0):
        p.error("--max-segment-seconds, --min-silence-seconds and --num-threads must be >= 0 (or --num-threads idle)")
    if not 0.0 < args.vad_threshold < 1.0:
        p.error(f"--vad-threshold must be in (0, 1), got {args.vad_threshold}")
    if not 0 <= args.video_overlap_seconds < args.video_window_seconds:
        p.error("--video-overlap-seconds must be >= 0 and shorter than --video-window-seconds")
    if args.previous_text == "on" and args.decoder not in (None, "whisper-decoder"):
        p.error(f"--previous-text on: only a Whisper decoder conditions on previous text, not --decoder {args.decoder}")
    from espnet.asr.fallback import check_guard_args

    try:
        check_guard_args(args)
    except ValueError as err:
        p.error(str(err))


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    from espnet.asr.transcription.writers import FORMATS, parse_formats

    p = argparse.ArgumentParser(prog="transcribe.py", description=DESCRIPTION)
    p.add_argument("inputs", nargs="+", metavar="INPUT",
                   help="Media files (mp4, mkv, mov, avi, webm, wav, flac, mp3, m4a, ogg, ...), directories (searched "
                        f"recursively for {', '.join(MEDIA_EXTENSIONS[:10])}, ...) or list files "
                        f"({', '.join(LIST_EXTENSIONS)}: one path a line, relative to the list; # comments).")
    p.add_argument("--output-dir", default=None,
                   help="Where the outputs go (INPUT_NAME.txt, ...). (Default: beside each input)")
    p.add_argument("--format", default="txt,json,srt,vtt",
                   help=f"Comma-separated output formats: {', '.join(FORMATS)} or all. (Default: all four)")
    p.add_argument("--overwrite", action="store_true", help="Replace existing outputs (default: refuse the input).")
    p.add_argument("--no-progress", action="store_true", help="No progress bars.")
    add_transcription_args(p)
    args = p.parse_args(argv)
    check_transcription_args(p, args)
    try:
        args.formats = parse_formats(args.format)
    except ValueError as err:
        p.error(str(err))
    return args


def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.debug else logging.WARNING, format="%(message)s")
    from espnet.training.cli_errors import run_cli

    return run_cli(lambda: transcribe(args), debug=args.debug)


def gather_inputs(names: List[str]) -> Tuple[List[str], List[str]]:
    """``(media files, error lines)`` of the command-line inputs: files as given, directories
    searched recursively for media extensions (sorted), list files read line by line."""
    files, errors = [], []
    for name in names:
        if os.path.isdir(name):
            found = sorted(os.path.join(root, f) for root, _, fs in os.walk(name) for f in fs
                           if f.lower().endswith(MEDIA_EXTENSIONS) and not f.startswith("."))
            if not found:
                errors.append(f"{name}: the directory holds no media file ({', '.join(MEDIA_EXTENSIONS[:10])}, ...)")
            files += found
        elif name.lower().endswith(LIST_EXTENSIONS) and os.path.isfile(name):
            base = os.path.dirname(os.path.abspath(name))
            with open(name, encoding="utf8") as handle:
                for line in handle:
                    line = line.strip()
                    if line and not line.startswith("#"):
                        files.append(line if os.path.isabs(line) else os.path.join(base, line))
        else:
            files.append(name)
    return files, errors


def load_recognizer(args: argparse.Namespace):
    from espnet.asr.pretrained import Recognizer, decoding_device, resolve_for_decoding

    if args.model is None and args.decoder == "whisper-decoder" and args.whisper_pad_seconds is None:
        args.whisper_pad_seconds = 30.0  # Whisper's own input convention (see docs/transcription.md)
    device = decoding_device(args.accelerator)
    if device == "cpu":
        from espnet.training.cpu_threads import apply_num_threads

        apply_num_threads(args.num_threads)
    resolved = resolve_for_decoding(args.model, args, device)
    return Recognizer.from_resolved(resolved, device=device)


def build_transcriber(args: argparse.Namespace):
    """The model of :func:`add_transcription_args`'s flags, loaded once, with its decoding and
    segmentation settings: a :class:`~espnet.asr.transcription.pipeline.Transcriber`."""
    from espnet.asr.fallback import resolve_fallback
    from espnet.asr.transcription.decode import SegmentOptions
    from espnet.asr.transcription.pipeline import Transcriber
    from espnet.asr.transcription.segments import VadOptions
    from espnet.nets.pytorch_backend.decoder.base_decoder import nar_candidates_refusal
    from espnet.training.cli_args import paraformer_decoding_values

    recognizer = load_recognizer(args)
    whisper = recognizer.model.config.decoder == "whisper-decoder"
    if args.previous_text == "on" and not whisper:
        raise ValueError(f"--previous-text on: only a Whisper decoder conditions on previous text; {args.model} has "
                         f"--decoder {recognizer.model.config.decoder}")
    zero_shot_whisper = whisper and args.model is None
    nar = paraformer_decoding_values(args)
    refusal = nar_candidates_refusal(decoder=recognizer.model.config.decoder, model=args.model or "the model", **nar)
    if refusal:
        raise ValueError(refusal)
    options = {"beam_size": args.beam_size, "max_new_tokens": args.max_new_tokens, "penalty": args.penalty, **nar}
    if args.ctc_weight is not None:
        options["ctc_weight"] = args.ctc_weight
    recognizer.decode_options(**options)  # what the model cannot do is refused before any media is read
    segments = SegmentOptions(VadOptions(threshold=args.vad_threshold, min_silence=args.min_silence_seconds),
                              args.max_segment_seconds, args.video_window_seconds, args.video_overlap_seconds)
    return Transcriber(recognizer, options, segments, batch_size=args.batch_size, drop_stream=args.drop_stream,
                       guard=args.guard, fallback=resolve_fallback(args.fallback, args.fallback_best_of, zero_shot_whisper),
                       previous_text=args.previous_text == "on" or (args.previous_text == "auto" and zero_shot_whisper))


def transcribe(args: argparse.Namespace) -> int:
    """Transcribe every input; returns 2 when any failed (each failure printed as one line)."""
    from espnet.asr.transcription.writers import output_paths, write_outputs
    from espnet.training.cli_errors import INPUT_ERRORS

    files, errors = gather_inputs(args.inputs)
    for line in errors:
        print(f"error: {line}", file=sys.stderr)
    failed = len(errors)
    transcriber = build_transcriber(args)
    claimed: Dict[str, str] = {}
    done, media_seconds, busy = [], 0.0, 0.0
    for path in files:
        stem = os.path.splitext(os.path.basename(path))[0]
        out_dir = args.output_dir or os.path.dirname(os.path.abspath(path))
        paths = output_paths(out_dir, stem, args.formats)
        try:
            for out in paths.values():
                if out in claimed:
                    raise ValueError(f"{path}: its output {out} is also that of {claimed[out]} (same name); "
                                     "rename one or transcribe them into different --output-dir")
                if os.path.exists(out) and not args.overwrite:
                    raise ValueError(f"{path}: {out} exists (--overwrite replaces it)")
            start = time.perf_counter()
            transcript = transcriber(path, progress=not args.no_progress)
            write_outputs(transcript, paths)
            busy += time.perf_counter() - start
            media_seconds += transcript.seconds
            claimed.update({out: path for out in paths.values()})
            done.append(paths)
            gaps = transcript.gaps
            no_face = f", {sum(g.seconds for g in gaps):.1f} s without a face not decoded" if gaps else ""
            print(f"{path}: {len(transcript.segments)} segments, {transcript.seconds:.1f} s{no_face} -> "
                  f"{', '.join(paths.values())}")
            warning = transcriber.repetition_warning(transcript)
            if warning:
                print(warning, file=sys.stderr)
        except INPUT_ERRORS as err:
            message = str(err)
            print(f"error: {message if message.startswith(path) else f'{path}: {message}'}", file=sys.stderr)
            failed += 1
    if done:
        dirs = sorted({os.path.dirname(p) for paths in done for p in paths.values()})
        print(f"transcribed {len(done)} of {len(done) + failed} inputs ({media_seconds:.1f} s of media) in "
              f"{busy:.1f} s: real-time factor {busy / max(media_seconds, 1e-9):.3f}; outputs in {', '.join(dirs)}")
    return 2 if failed else 0
