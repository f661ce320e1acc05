"""Transcribe recordings: any video or audio file (or a directory / list of them) in, text and
subtitles out (.txt, .json, .srt, .vtt).

    python transcribe.py --model exp/avsr/model_avg_10.pth talk.mp4 --output-dir out/

A thin shell over :mod:`espnet.asr.transcribe_cli`; ``python transcribe.py --help`` lists every flag."""

import sys

from espnet.asr.transcribe_cli import main

if __name__ == "__main__":
    sys.exit(main())
