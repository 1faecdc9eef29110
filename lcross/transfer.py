"""`python -m lcross.transfer ...`: the same command as `lcross transfer` (see ``lcross.transfer_command``)."""

import sys

from lcross.transfer_command import main

if __name__ == "__main__":
    sys.exit(main())
