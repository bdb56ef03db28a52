"""Files the demo keeps between runs: its state directory and the relay token.

The token is made once and kept, so that a page left open in the browser still
has a valid token cookie when ``am-demo`` restarts, and reconnects.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

__all__ = [
    "STATE_DIR_NAME",
    "default_repl_dir",
    "load_or_create_token",
    "state_dir",
]

STATE_DIR_NAME = "asyncmachine-demo"
TOKEN_FILE_NAME = "token"
_TOKEN_BYTES = 24


def state_dir() -> Path:
    """Return the demo's state directory: ``$XDG_STATE_HOME/asyncmachine-demo``.

    ``XDG_STATE_HOME`` defaults to ``~/.local/state``, as in the XDG Base
    Directory specification.
    """
    base = os.environ.get("XDG_STATE_HOME", "").strip()
    root = Path(base) if base else Path.home() / ".local" / "state"
    return root / STATE_DIR_NAME


def default_repl_dir() -> Path:
    """Return the default directory of the address files: ``<state dir>/repl``."""
    return state_dir() / "repl"


def load_or_create_token(directory: Path) -> str:
    """Return the token kept in `directory`, creating it (mode 0600) if missing.

    Raises:
        ValueError: The token file exists but is empty.
        OSError: The file cannot be read or written.
    """
    path = directory / TOKEN_FILE_NAME
    try:
        token = path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        pass
    else:
        if not token:
            raise ValueError(f"token file {path} is empty; delete it to make a new one")
        return token

    directory.mkdir(parents=True, exist_ok=True)
    token = secrets.token_urlsafe(_TOKEN_BYTES)
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        # Another am-demo created it first.
        return load_or_create_token(directory)
    with os.fdopen(descriptor, "w", encoding="utf-8") as file:
        file.write(token + "\n")
    return token
