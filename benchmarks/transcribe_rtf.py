"""Real-time factor of ``transcribe.py`` on a long recording: eSpeak utterances of the
generated corpus joined by 1 s silences into about ``--seconds`` of 96x96 mouth-crop video at
29.97 fps with 48 kHz stereo AAC (``preparation/long_recording.py``), transcribed with the
model given by the flags after ``--`` (what ``transcribe.py`` takes). Prints the segments, the
processing time, the real-time factor (processing seconds / media seconds) and the time to
the first written result.

    python benchmarks/transcribe_rtf.py --seconds 60 -- --audio-encoder whisper \\
        --audio-model-name ../shared/models/whisper-tiny.en --decoder whisper-decoder \\
        --decoder-model-name ../shared/models/whisper-tiny.en --elayers 0 --adim 384 --beam-size 1
"""

import argparse
import os
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:
    sys.path.insert(0, REPO)


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    model_flags = argv[argv.index("--") + 1 :] if "--" in argv else []
    own = argv[: argv.index("--")] if "--" in argv else argv
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seconds", type=float, default=60.0, help="Length of the recording. (Default: 60)")
    p.add_argument("--work-dir", default=None, help="Where the corpus and recording go. (Default: a temporary one)")
    args = p.parse_args(own)

    from datamodule.media import load_audio, load_video
    from espnet.asr import transcribe_cli
    from preparation.long_recording import write_recording
    from preparation.synthetic_av import generate

    work = args.work_dir or tempfile.mkdtemp(prefix="transcribe_rtf.")
    n_utts = max(3, int(args.seconds / 3.3) + 1)  # about 2.3 s of speech + 1 s of silence each
    generate(os.path.join(work, "corpus"), num_utts=n_utts, num_speakers=3, seed=0, progress=False)
    clips, length = [], 1.0
    for root, _, files in sorted(os.walk(os.path.join(work, "corpus", "synth"))):
        for name in sorted(f for f in files if f.endswith(".mp4")):
            if length >= args.seconds:
                break
            mp4 = os.path.join(root, name)
            clips.append((load_video(mp4), load_audio(mp4[:-4] + ".wav")[:, 0]))
            length += clips[-1][1].numel() / 16000 + 1.0
    recording = os.path.join(work, "recording.mp4")
    truth, seconds = write_recording(recording, clips, gap=1.0)
    print(f"recording: {recording} ({seconds:.1f} s, {len(truth)} utterances)")
    started, start = time.time(), time.perf_counter()
    code = transcribe_cli.main([recording, "--output-dir", os.path.join(work, "out"), "--overwrite", *model_flags])
    total = time.perf_counter() - start
    written = os.path.getmtime(os.path.join(work, "out", "recording.txt")) - started
    print(f"wall time {total:.1f} s with model loading (real-time factor {total / seconds:.3f}); "
          f"the transcript was written {written:.1f} s after the start")
    return code


if __name__ == "__main__":
    sys.exit(main())
