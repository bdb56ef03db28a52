"""Render Graphviz DOT to SVG inside a Pyodide kernel, without a ``dot`` program.

Pyodide cannot start processes, so the graphviz Python package builds DOT there
but cannot render it. This module loads Graphviz compiled to WebAssembly (the
npm package @hpcc-js/wasm-graphviz, shipped inside this wheel as
``graphviz.mjs``) into the kernel's JavaScript context and renders with it.

Usage in a JupyterLite notebook (top-level ``await`` works in cells)::

    import lite_graphviz
    from asyncmachine import vis

    await lite_graphviz.display_graph(vis.machine_graph(mach))
    svg = await lite_graphviz.render_svg("digraph { a -> b }")
"""

from __future__ import annotations

from importlib import resources
from typing import Any, Protocol

__all__ = ["display_graph", "graphviz_version", "render_svg"]

_MODULE_FILE = "graphviz.mjs"

# The loaded Graphviz instance (a JsProxy), created on first use.
_graphviz: Any = None


class DotSource(Protocol):
    """Any object with DOT text in ``source``, like ``graphviz.Digraph``."""

    @property
    def source(self) -> str: ...


async def _load_graphviz() -> Any:
    global _graphviz
    if _graphviz is not None:
        return _graphviz

    import js
    from pyodide.code import run_js
    from pyodide.ffi import to_js

    # The kernel runs in a module Web Worker, where importScripts() fails, so
    # the ES module is imported from a blob: URL made of its text. The text
    # comes from this package, so no request leaves the page.
    code = resources.files(__package__).joinpath(_MODULE_FILE).read_text("utf-8")
    options = to_js({"type": "text/javascript"}, dict_converter=js.Object.fromEntries)
    url = js.URL.createObjectURL(js.Blob.new(to_js([code]), options))
    try:
        import_module = run_js("(url) => import(url)")
        module = await import_module(url)
    finally:
        js.URL.revokeObjectURL(url)

    _graphviz = await module.Graphviz.load()
    return _graphviz


def _dot_text(graph: str | DotSource) -> str:
    if isinstance(graph, str):
        return graph
    source = getattr(graph, "source", None)
    if not isinstance(source, str):
        raise TypeError(
            f"expected DOT text or an object with a str 'source' attribute "
            f"(like graphviz.Digraph), got {type(graph).__name__}"
        )
    return source


async def render_svg(graph: str | DotSource, engine: str = "dot") -> str:
    """Render a graph to SVG text with the WebAssembly Graphviz.

    Args:
        graph: DOT text, or an object with DOT text in ``source``, like
            ``graphviz.Digraph``.
        engine: the Graphviz layout engine: dot, neato, fdp, sfdp, circo,
            twopi, osage or patchwork.

    Returns:
        The SVG document as a string.

    Raises:
        TypeError: `graph` is neither DOT text nor has a ``source``.
        pyodide.ffi.JsException: Graphviz rejected the DOT text; the message
            is Graphviz's error.
    """
    dot = _dot_text(graph)
    graphviz = await _load_graphviz()
    return str(graphviz.layout(dot, "svg", engine))


async def display_graph(graph: str | DotSource, engine: str = "dot") -> str:
    """Render a graph to SVG and display it in the current cell's output.

    Args:
        graph: DOT text, or an object with DOT text in ``source``.
        engine: the Graphviz layout engine, as in :func:`render_svg`.

    Returns:
        The SVG text that was displayed.
    """
    from IPython.display import SVG, display

    svg = await render_svg(graph, engine)
    display(SVG(svg))
    return svg


async def graphviz_version() -> str:
    """Return the version of the WebAssembly Graphviz, for example ``16.1.0``."""
    graphviz = await _load_graphviz()
    return str(graphviz.version())
