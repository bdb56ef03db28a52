"""Rich display of machines in IPython, and the transition history it starts.

Displaying a machine shows its diagram as SVG, with ``string_all()`` as the text
fallback. The first display also attaches a :class:`TransitionRecorder`, which
``%am history`` reads.
"""

from __future__ import annotations

import logging
import weakref
from typing import TYPE_CHECKING, Any

from .._machine import Machine
from ..vis import DotNotFoundError, TransitionRecorder, machine_graph, to_svg

if TYPE_CHECKING:
    from IPython.core.interactiveshell import InteractiveShell

__all__ = [
    "HISTORY_LIMIT",
    "ensure_recorder",
    "machine_text",
    "recorder_of",
    "register_formatters",
    "svg_body",
    "unregister_formatters",
]

logger = logging.getLogger("asyncmachine.jupyter")

HISTORY_LIMIT = 100

_recorders: weakref.WeakKeyDictionary[Machine, TransitionRecorder] = (
    weakref.WeakKeyDictionary()
)
_dot_warned = False


def ensure_recorder(mach: Machine) -> TransitionRecorder:
    """Return the history recorder of `mach`, attaching one on first use."""
    recorder = _recorders.get(mach)
    if recorder is None:
        recorder = TransitionRecorder(HISTORY_LIMIT)
        mach.add_tracer(recorder)
        _recorders[mach] = recorder
    return recorder


def recorder_of(mach: Machine) -> TransitionRecorder | None:
    """Return the history recorder of `mach`, or None when none is attached."""
    return _recorders.get(mach)


def machine_text(mach: Machine) -> str:
    """Return the text form of a machine: its id and every state with its tick."""
    if mach.is_disposed():
        return f"{mach.id} (disposed)"
    return f"{mach.id} {mach.string_all()}"


def svg_body(svg: str) -> str:
    """Return `svg` from its ``<svg`` tag on, without the XML prolog and doctype.

    Notebook front ends insert the SVG into the page, where a prolog is invalid.
    """
    start = svg.find("<svg")
    return svg[start:] if start >= 0 else svg


def warn_dot_missing(err: DotNotFoundError) -> None:
    """Log once per process that diagrams fall back to text."""
    global _dot_warned
    if not _dot_warned:
        _dot_warned = True
        logger.warning("machines display as text: %s", err)


def _format_svg(mach: Machine) -> str | None:
    ensure_recorder(mach)
    try:
        return svg_body(to_svg(machine_graph(mach)))
    except DotNotFoundError as err:
        # None makes IPython fall back to the text form.
        warn_dot_missing(err)
        return None


def _format_text(mach: Machine, printer: Any, cycle: bool) -> None:
    printer.text(machine_text(mach))


def _formatters(ip: InteractiveShell) -> dict[str, Any]:
    if ip.display_formatter is None:
        raise RuntimeError("the IPython shell has no display formatter")
    return ip.display_formatter.formatters


def register_formatters(ip: InteractiveShell) -> None:
    """Make `ip` display machines as SVG diagrams with a text fallback."""
    formatters = _formatters(ip)
    formatters["image/svg+xml"].for_type(Machine, _format_svg)
    formatters["text/plain"].for_type(Machine, _format_text)


def unregister_formatters(ip: InteractiveShell) -> None:
    """Undo :func:`register_formatters`."""
    formatters = _formatters(ip)
    for mime in ("image/svg+xml", "text/plain"):
        try:
            formatters[mime].pop(Machine)
        except KeyError:
            pass
