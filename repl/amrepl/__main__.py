"""``python -m amrepl``: the am-repl command."""

from ._cli import main

raise SystemExit(main())
