"""Fixtures of the Jupyter tests: an IPython shell with the extension loaded."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from IPython.core.interactiveshell import InteractiveShell
from traitlets.config import Config

import asyncmachine as am

REPO_NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"

SCHEMA = {
    "Start": am.State(add=["Ready"]),
    "Ready": am.State(require=["Start"]),
    "Msg": am.State(multi=True),
}


@pytest.fixture(scope="session")
def shell(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InteractiveShell]:
    """Return IPython's shell with asyncmachine.jupyter loaded.

    Its profile directory is temporary and its history is off, so the tests
    touch nothing in the user's ~/.ipython.
    """
    os.environ["IPYTHONDIR"] = str(tmp_path_factory.mktemp("ipython"))
    config = Config()
    config.HistoryManager.enabled = False
    ip = InteractiveShell.instance(config=config)
    ip.run_line_magic("load_ext", "asyncmachine.jupyter")
    yield ip
    ip.run_line_magic("unload_ext", "asyncmachine.jupyter")


@pytest.fixture
def need_dot() -> None:
    """Skip when graphviz's dot program is missing."""
    if shutil.which("dot") is None:
        pytest.skip(
            "graphviz's dot is not installed; run scripts/install_system_deps.sh"
        )
