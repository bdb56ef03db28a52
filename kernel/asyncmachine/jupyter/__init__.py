"""Jupyter and IPython integration: rich display, the ``%am`` magic, live diagrams.

Load it in a notebook or IPython with ``%load_ext asyncmachine.jupyter``, or use
the ``asyncmachine`` kernel, which loads it at start
(``python -m asyncmachine.jupyter install``)::

    %load_ext asyncmachine.jupyter
    import asyncmachine as am

    mach = am.Machine({"Start": am.State()}, id="foo")
    mach                      # an SVG diagram, text fallback "foo () [...]"
    %am add foo Start
    view = live(mach)         # from asyncmachine.jupyter import live
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._display import ensure_recorder, machine_text, recorder_of
from ._live import LiveDiagram, live
from ._magics import USAGE, AsyncmachineMagics, am_magic, find_machine

if TYPE_CHECKING:
    from IPython.core.interactiveshell import InteractiveShell

__all__ = [
    "USAGE",
    "AsyncmachineMagics",
    "LiveDiagram",
    "am_magic",
    "ensure_recorder",
    "find_machine",
    "live",
    "load_ipython_extension",
    "machine_text",
    "recorder_of",
    "unload_ipython_extension",
]


def load_ipython_extension(ip: InteractiveShell) -> None:
    """Register the machine display formatters and the ``%am`` line magic."""
    from ._display import register_formatters

    register_formatters(ip)
    ip.register_magics(AsyncmachineMagics)


def unload_ipython_extension(ip: InteractiveShell) -> None:
    """Remove what :func:`load_ipython_extension` registered."""
    from ._display import unregister_formatters

    unregister_formatters(ip)
    ip.magics_manager.magics["line"].pop("am", None)
