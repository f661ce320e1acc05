"""WER of ``transcribe.py``'s whole text for Whisper zero-shot with and without openai-whisper's
conventions, side by side: the previous segment's text as prompt (``--previous-text``) and the
temperature fallback (``--fallback-temperatures``), at each ``--pad-seconds``.

Recordings: ``--recording AUDIO REFERENCE_TXT`` (repeatable), e.g. the real recorded speech of
``python -m preparation.recorded_speech --out exp/recorded_speech`` (``recorded/all.wav`` and
``recorded/all.txt``), and/or ``--espeak-seconds N``: eSpeak utterances of the generated corpus
joined by 1 s of silence. The model is loaded once per padding; each setting transcribes every
recording (Silero VAD segments, as ``transcribe.py``) and the WER is scored on the whole text
after Whisper's English normaliser.

    python benchmarks/whisper_transcribe_wer.py --recording exp/recorded_speech/recorded/all.wav \\
        exp/recorded_speech/recorded/all.txt --espeak-seconds 60 --pad-seconds 30 5
"""

import argparse
import os
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:
    sys.path.insert(0, REPO)


def espeak_recording(work: str, seconds: float):
    """An eSpeak recording of about ``seconds`` (audio only) and its reference text."""
    from datamodule.media import load_audio
    from preparation.long_recording import write_recording
    from preparation.synthetic_av import generate

    paths = generate(os.path.join(work, "corpus"), num_utts=max(3, int(seconds / 3.3) + 1), num_speakers=3, seed=0,
                     progress=False)
    texts = {}
    for split in ("train", "val", "test"):
        with open(paths[split], encoding="utf8") as handle:
            for line in handle:
                if line.strip():
                    dataset, rel, _, _, text = line.rstrip("\n").split(",", 4)
                    texts[os.path.join(work, "corpus", dataset, os.path.splitext(rel)[0] + ".wav")] = text
    clips, refs, length = [], [], 1.0
    for wav in sorted(texts):
        if length >= seconds:
            break
        audio = load_audio(wav)[:, 0]
        clips.append((None, audio))
        refs.append(texts[wav])
        length += audio.numel() / 16000 + 1.0
    path = os.path.join(work, "espeak.m4a")
    write_recording(path, clips, gap=1.0, video=False)
    return path, " ".join(refs)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--recording", nargs=2, action="append", default=[], metavar=("AUDIO", "REFERENCE_TXT"))
    p.add_argument("--espeak-seconds", type=float, default=0.0, help="Add an eSpeak recording this long (0: none).")
    p.add_argument("--model-dir", default=os.path.join(os.path.dirname(REPO), "shared", "models", "whisper-tiny.en"))
    p.add_argument("--pad-seconds", type=float, nargs="+", default=[30.0])
    p.add_argument("--beam-size", type=int, default=1)
    p.add_argument("--work-dir", default=None)
    args = p.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    from espnet.asr.evaluate import corpus_wer, text_normalizer
    from espnet.asr.fallback import FallbackOptions
    from espnet.asr.pretrained import Recognizer
    from espnet.asr.transcription.decode import SegmentOptions, plan_segments, transcribe_media
    from espnet.asr.transcription.media import decode_media

    work = args.work_dir or tempfile.mkdtemp(prefix="whisper_transcribe_wer.")
    recordings = [(audio, open(ref, encoding="utf8").read().strip()) for audio, ref in args.recording]
    if args.espeak_seconds > 0:
        recordings.append(espeak_recording(work, args.espeak_seconds))
    normalize = text_normalizer("whisper", [args.model_dir])
    settings = [(prompt, fallback) for prompt in (False, True) for fallback in (False, True)]
    print(f"{'recording':>12} | {'pad s':>5} | {'prompt':>6} | {'fallback':>8} | {'WER %':>6} | {'repeating':>9} | "
          f"{'resampled':>9} | {'seconds':>7}")
    for pad in args.pad_seconds:
        flags = ["--audio-encoder", "whisper", "--audio-model-name", args.model_dir, "--decoder", "whisper-decoder",
                 "--decoder-model-name", args.model_dir, "--elayers", "0", "--adim", "384",
                 "--whisper-pad-seconds", f"{pad:g}"]
        recognizer = Recognizer.from_pretrained(None, flags)
        for audio, reference in recordings:
            media = decode_media(audio, ("audio",))
            segments, _ = plan_segments(recognizer, media, SegmentOptions())
            for prompt, fallback in settings:
                start = time.perf_counter()
                transcript = transcribe_media(recognizer, media, segments, progress=False, previous_text=prompt,
                                              fallback=FallbackOptions() if fallback else None,
                                              beam_size=args.beam_size, max_new_tokens=64)
                seconds = time.perf_counter() - start
                wer = corpus_wer([reference], [transcript.text], normalize)["wer"]
                resampled = sum(s.temperature > 0 for s in transcript.segments)
                name = os.path.basename(audio)
                print(f"{name:>12} | {pad:5g} | {'on' if prompt else 'off':>6} | {'on' if fallback else 'off':>8} | "
                      f"{100 * wer:6.1f} | {transcript.repeating:>4} / {len(segments):<2} | {resampled:>9} | "
                      f"{seconds:7.1f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
