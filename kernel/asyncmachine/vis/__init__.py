"""Graphviz diagrams of machines, networks of machines and transition sequences.

Building a diagram needs only the graphviz Python package. Rendering SVG or PNG
also needs graphviz's ``dot`` program (``apt-get install graphviz``)::

    import asyncmachine as am
    from asyncmachine import vis

    mach = am.Machine({"Start": am.State(add=["Ready"]), "Ready": am.State()})
    mach.add("Start")
    graph = vis.machine_graph(mach)
    vis.to_dot(graph)  # the DOT source, no dot program needed
    vis.render(graph, "foo.svg")
"""

from ._links import links_for
from ._machine import machine_graph
from ._network import LINK_KINDS, Link, network_graph
from ._output import DotNotFoundError, render, to_dot, to_png, to_svg
from ._sequence import (
    TransitionRecord,
    TransitionRecorder,
    record_transitions,
    sequence_graph,
)

__all__ = [
    "LINK_KINDS",
    "DotNotFoundError",
    "Link",
    "TransitionRecord",
    "TransitionRecorder",
    "links_for",
    "machine_graph",
    "network_graph",
    "record_transitions",
    "render",
    "sequence_graph",
    "to_dot",
    "to_png",
    "to_svg",
]
