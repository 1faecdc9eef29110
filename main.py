"""lcross command line: `python main.py fit --config configs/tiny.yaml` (see README). The same as the `lcross` console
script: bad input exits 2 with its message; --debug shows the traceback."""

import sys

from lcross.cli.main import console

if __name__ == "__main__":
    sys.exit(console())
