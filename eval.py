"""Decode a test label list with a trained checkpoint and print the corpus WER.

A thin shell over :mod:`espnet.asr.eval_cli`; ``python eval.py --help`` lists every flag."""

import sys

from espnet.asr.eval_cli import main

if __name__ == "__main__":
    sys.exit(main())
