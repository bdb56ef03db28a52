"""Run am-dbg: ``python -m asyncmachine.dbg --help``."""

import sys

from ._cli import main

sys.exit(main())
