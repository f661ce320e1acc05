"""Train an Auto-AVSR style recogniser (hybrid CTC/attention) with PyTorch Lightning.

A thin shell: the flags are in :mod:`espnet.training.train_cli`, the run in
:mod:`espnet.training.training_run`. ``python train.py --help`` lists every flag."""

import sys

from espnet.training.train_cli import main

if __name__ == "__main__":
    sys.exit(main())
