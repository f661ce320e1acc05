"""A small test set of real recorded English speech (not synthesised), from the test data that
Debian's ``pocketsphinx-testdata`` package installs (BSD licence, CMU Sphinx): five LibriVox
read-speech utterances (Sense and Sensibility, a male reader) and five short "cards" commands
(another speaker), 16 kHz mono WAV with their transcripts (38.5 s in all).

    apt-get install pocketsphinx-testdata
    python -m preparation.recorded_speech --out exp/recorded_speech
    python eval.py --root-dir exp/recorded_speech --test-file test.csv --audio-encoder whisper ...

Writes ``OUT/recorded/<name>.wav``, ``OUT/labels/test.csv`` (audio-only lines with the
transcript column; the token-id column holds one placeholder id per word, since the decoders
this set is meant for tokenize the transcript themselves) and ``OUT/recorded/all.wav``, the ten
utterances joined with 1 s of silence in between (for ``transcribe.py``), with its reference
text in ``OUT/recorded/all.txt``. The media are not part of the repository: this script copies
them from the installed package."""

import argparse
import os
import re
import sys
import wave
from typing import List, Tuple

DEFAULT_SOURCE = "/usr/share/pocketsphinx/test/data"
SETS = (("librivox", "transcription"), ("cards", "cards.transcription"))
SAMPLE_RATE = 16000
GAP_SECONDS = 1.0


def read_transcription(path: str) -> List[Tuple[str, str]]:
    """``(file id, text)`` of each ``<s> text </s> (id)`` line of a Sphinx transcription file."""
    rows = []
    with open(path, encoding="utf8") as handle:
        for n, line in enumerate(handle, start=1):
            line = line.strip()
            if not line:
                continue
            match = re.fullmatch(r"(?:<s>)?\s*(.*?)\s*(?:</s>)?\s*\(([^()]+)\)", line)
            if match is None:
                raise ValueError(f"{path}:{n}: expected '<s> text </s> (file id)', got {line!r}")
            rows.append((match.group(2), match.group(1)))
    return rows


def read_wav(path: str) -> bytes:
    """16-bit mono 16 kHz samples of ``path``; any other format is an error naming it."""
    with wave.open(path, "rb") as handle:
        if (handle.getframerate(), handle.getnchannels(), handle.getsampwidth()) != (SAMPLE_RATE, 1, 2):
            raise ValueError(f"{path}: expected 16 kHz mono 16-bit WAV, got {handle.getframerate()} Hz, "
                             f"{handle.getnchannels()} channel(s), {8 * handle.getsampwidth()}-bit")
        return handle.readframes(handle.getnframes())


def write_wav(path: str, samples: bytes) -> None:
    with wave.open(path, "wb") as handle:
        handle.setnchannels(1)
        handle.setsampwidth(2)
        handle.setframerate(SAMPLE_RATE)
        handle.writeframes(samples)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--source", default=DEFAULT_SOURCE,
                   help=f"pocketsphinx-testdata's data folder. (Default: {DEFAULT_SOURCE})")
    p.add_argument("--out", required=True, help="Output corpus root.")
    args = p.parse_args(argv)
    if not os.path.isdir(args.source):
        print(f"error: --source {args.source}: not a directory (apt-get install pocketsphinx-testdata)",
              file=sys.stderr)
        return 2
    media_dir = os.path.join(args.out, "recorded")
    os.makedirs(media_dir, exist_ok=True)
    os.makedirs(os.path.join(args.out, "labels"), exist_ok=True)
    lines, joined, texts = [], [], []
    for folder, listing in SETS:
        for file_id, text in read_transcription(os.path.join(args.source, folder, listing)):
            samples = read_wav(os.path.join(args.source, folder, file_id + ".wav"))
            name = f"{folder}_{file_id}"
            write_wav(os.path.join(media_dir, name + ".wav"), samples)
            frames = len(samples) // 2 // 640  # 25 Hz frames
            ids = " ".join("1" for _ in text.split())
            lines.append(f"recorded,{name}.mp4,{frames},{ids},{text}")
            joined.append(samples + b"\0\0" * int(GAP_SECONDS * SAMPLE_RATE))
            texts.append(text)
    with open(os.path.join(args.out, "labels", "test.csv"), "w", encoding="utf8") as handle:
        handle.write("".join(line + "\n" for line in lines))
    write_wav(os.path.join(media_dir, "all.wav"), b"".join(joined))
    with open(os.path.join(media_dir, "all.txt"), "w", encoding="utf8") as handle:
        handle.write(" ".join(texts) + "\n")
    seconds = sum(len(j) for j in joined) / 2 / SAMPLE_RATE
    print(f"{len(lines)} utterances -> {args.out}/labels/test.csv; joined recording {media_dir}/all.wav "
          f"({seconds:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
