"""Entry point of ``python -m asyncmachine.demo``."""

import sys

from .cli import main

sys.exit(main())
