"""Colours and graphviz attributes shared by every diagram.

The palette is dark: light text on a dark background, with active states filled
in bright colours so that they stand out in a notebook and in an SVG file alike.
"""

from __future__ import annotations

import re

BACKGROUND = "#1E1E2E"
FOREGROUND = "#CDD6F4"
CLUSTER_BORDER = "#F9E2AF"
GROUP_BORDER = "#6C7086"
HALF_BORDER = "#6C7086"
FONT = "Helvetica"

INACTIVE_FILL = "#45475A"
INACTIVE_TEXT = "#FFFFFF"
ACTIVE_FILL = "#F9E2AF"
ACTIVE_TEXT = "#000000"
# Active states with a meaning of their own get their own fill.
START_FILL = "#329241"
READY_FILL = "#00BFFF"
ERROR_FILL = "#E64553"

REQUIRE_COLOR = "#87CEFA"
ADD_COLOR = "#FFA500"
REMOVE_COLOR = "#DA70D6"
AFTER_COLOR = "#A6ADC8"
MIRROR_COLOR = "#94E2D5"
RPC_COLOR = "#FFA500"
PIPE_COLOR = "#F5C2E7"
PARENT_COLOR = "#FFFFFF"
CANCELED_COLOR = "#E64553"

GRAPH_ATTRS = {
    "rankdir": "LR",
    "compound": "true",
    "bgcolor": BACKGROUND,
    "fontname": FONT,
    "fontcolor": FOREGROUND,
    "color": FOREGROUND,
    "nodesep": "0.3",
    "ranksep": "0.5",
}
NODE_ATTRS = {
    "shape": "box",
    "style": "rounded,filled",
    "fontname": FONT,
    "fontsize": "11",
    "fillcolor": INACTIVE_FILL,
    "fontcolor": INACTIVE_TEXT,
    "color": INACTIVE_TEXT,
}
EDGE_ATTRS = {
    "fontname": FONT,
    "fontsize": "9",
    "fontcolor": FOREGROUND,
}

# Edge attributes per relation kind. Each kind differs in colour, head and
# label, so they remain distinguishable in a grey-scale printout.
RELATION_EDGES: dict[str, dict[str, str]] = {
    "require": {
        "color": REQUIRE_COLOR,
        "arrowhead": "dot",
        "label": "require",
        "class": "rel-require",
    },
    "add": {
        "color": ADD_COLOR,
        "arrowhead": "normal",
        "label": "add",
        "class": "rel-add",
    },
    "remove": {
        "color": REMOVE_COLOR,
        "dir": "both",
        "arrowhead": "diamond",
        "arrowtail": "diamond",
        "label": "remove",
        "class": "rel-remove",
    },
    "double remove": {
        "color": REMOVE_COLOR,
        "dir": "both",
        "arrowhead": "diamond",
        "arrowtail": "diamond",
        "penwidth": "3",
        "label": "double remove",
        "class": "rel-remove2",
    },
    "after": {
        "color": AFTER_COLOR,
        "style": "dashed",
        "arrowhead": "onormal",
        "label": "after",
        "class": "rel-after",
    },
}

# Edge attributes per link kind between machines.
LINK_EDGES: dict[str, dict[str, str]] = {
    "mirror": {
        "color": MIRROR_COLOR,
        "style": "dotted",
        "penwidth": "2",
        "arrowhead": "empty",
        "label": "mirror of",
        "class": "link-mirror",
    },
    "pipe": {
        "color": PIPE_COLOR,
        "style": "dashed",
        "arrowhead": "open",
        "label": "pipe",
        "class": "link-pipe",
    },
    "rpc": {
        "color": RPC_COLOR,
        "penwidth": "4",
        "arrowhead": "normal",
        "label": "rpc",
        "class": "link-rpc",
    },
    "parent": {
        "color": PARENT_COLOR,
        "penwidth": "3",
        "arrowhead": "dot",
        "label": "parent",
        "class": "link-parent",
    },
}

_UNSAFE = re.compile(r"[^A-Za-z0-9_]")


def state_fill(state: str, active: bool) -> tuple[str, str]:
    """Return the fill and text colours of a state node."""
    if not active:
        return INACTIVE_FILL, INACTIVE_TEXT
    if state == "Start":
        return START_FILL, "#FFFFFF"
    if state == "Ready":
        return READY_FILL, ACTIVE_TEXT
    if state == "Exception" or state.startswith("Err"):
        return ERROR_FILL, "#FFFFFF"
    return ACTIVE_FILL, ACTIVE_TEXT


def safe_id(text: str) -> str:
    """Return `text` with every character outside ``[A-Za-z0-9_]`` replaced by _.

    Used for cluster names and SVG element ids, which graphviz passes through.
    """
    return _UNSAFE.sub("_", text)
