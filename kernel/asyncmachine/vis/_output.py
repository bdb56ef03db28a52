"""Output of diagrams: DOT source, SVG, PNG and files.

SVG and PNG need graphviz's ``dot`` program. When it is missing they raise
:class:`DotNotFoundError`, and :func:`to_dot` still returns the source.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from ._graphviz import graphviz

__all__ = ["DotNotFoundError", "render", "to_dot", "to_png", "to_svg"]

logger = logging.getLogger("asyncmachine.vis")

DOT_MISSING_MESSAGE = (
    "graphviz's dot program was not found on PATH; install it with "
    "apt-get install graphviz (Debian, Ubuntu), brew install graphviz (macOS) "
    "or conda install graphviz; to_dot(graph) still returns the DOT source"
)


class DotNotFoundError(RuntimeError):
    """Graphviz's ``dot`` program is not installed or not on PATH."""

    def __init__(self, message: str = DOT_MISSING_MESSAGE) -> None:
        super().__init__(message)


def to_dot(graph: graphviz.Digraph) -> str:
    """Return the DOT source of `graph`; needs no ``dot`` program."""
    return graph.source


def _pipe(graph: graphviz.Digraph, fmt: str) -> bytes:
    # TODO: Pyodide cannot start processes, so pipe() fails there with an error
    # other than ExecutableNotFound; browser kernels need a WebAssembly renderer.
    try:
        return graph.pipe(format=fmt)
    except graphviz.ExecutableNotFound as err:
        raise DotNotFoundError() from err


def to_svg(graph: graphviz.Digraph) -> str:
    """Lay out `graph` with ``dot`` and return the SVG document.

    Raises:
        DotNotFoundError: the ``dot`` program is missing.
        graphviz.CalledProcessError: ``dot`` rejected the source.
    """
    return _pipe(graph, "svg").decode("utf-8")


def to_png(graph: graphviz.Digraph) -> bytes:
    """Lay out `graph` with ``dot`` and return the PNG image.

    Raises:
        DotNotFoundError: the ``dot`` program is missing.
        graphviz.CalledProcessError: ``dot`` rejected the source.
    """
    return _pipe(graph, "png")


_WRITERS = {".svg": "svg", ".png": "png", ".dot": "dot", ".gv": "dot"}


def render(graph: graphviz.Digraph, path: str | os.PathLike[str]) -> Path:
    """Write `graph` to `path` in the format its extension names.

    ``.svg`` and ``.png`` need the ``dot`` program, while ``.dot`` and ``.gv``
    write the source. Returns the path written.

    Raises:
        ValueError: the extension is not one of .svg, .png, .dot or .gv.
        DotNotFoundError: SVG or PNG was requested and ``dot`` is missing.
    """
    target = Path(path)
    kind = _WRITERS.get(target.suffix.lower())
    if kind is None:
        raise ValueError(
            f"cannot render to {str(target)!r}: unknown extension "
            f"{target.suffix!r}; use one of {', '.join(_WRITERS)}"
        )
    if kind == "dot":
        target.write_text(to_dot(graph), encoding="utf-8")
    elif kind == "svg":
        target.write_text(to_svg(graph), encoding="utf-8")
    else:
        target.write_bytes(to_png(graph))
    logger.debug("rendered %s", target)
    return target
