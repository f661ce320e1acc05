"""``python -m espnet.serve``: a thin shell over :mod:`espnet.serve.cli`."""

import sys

from espnet.serve.cli import main

if __name__ == "__main__":
    sys.exit(main())
