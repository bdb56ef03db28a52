"""Run the relay: ``python -m asyncmachine.relay --help``."""

from ._cli import main

raise SystemExit(main())
