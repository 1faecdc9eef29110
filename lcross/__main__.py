"""``python -m lcross <command> ...``: the same as the ``lcross`` command (``lcross.cli.main``)."""

import sys

from lcross.cli.main import console

sys.exit(console())
