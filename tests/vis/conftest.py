"""Fixtures of the diagram tests: a small machine with every relation kind."""

from __future__ import annotations

import shutil

import pytest

import asyncmachine as am

SCHEMA = {
    "Start": am.State(add=["Ready"]),
    "Ready": am.State(require=["Start"]),
    "Msg": am.State(multi=True, remove=["Bored"]),
    "Bored": am.State(remove=["Msg"], after=["Ready"]),
    "Online": am.State(auto=True, require=["Ready"]),
    "Far": am.State(require=["Online"]),
}


@pytest.fixture
def mach() -> am.Machine:
    """Return a machine with add, require, remove, after, Auto and Multi."""
    return am.Machine(SCHEMA, id="vis-foo")


@pytest.fixture
def need_dot() -> None:
    """Skip when graphviz's dot program is missing."""
    if shutil.which("dot") is None:
        pytest.skip(
            "graphviz's dot is not installed; run scripts/install_system_deps.sh"
        )
