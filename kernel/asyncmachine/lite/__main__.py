"""``python -m asyncmachine.lite [--out DIR] [--cache DIR] [--force]``."""

import sys

from ._build import main

if __name__ == "__main__":
    sys.exit(main())
