"""The diagram of one machine: its states, their relations and its groups.

Usage::

    import asyncmachine as am
    from asyncmachine import vis

    mach = am.Machine({"Start": am.State(add=["Ready"]), "Ready": am.State()})
    mach.add("Start")
    vis.to_svg(vis.machine_graph(mach))
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from .._errors import StateError
from .._schema import EXCEPTION, RELATIONS
from . import _style as style
from ._graphviz import graphviz

if TYPE_CHECKING:
    from .._machine import Machine
    from .._schema import State

__all__ = ["machine_graph"]


@dataclass
class MachineCluster:
    """Names of the cluster and the state nodes of one drawn machine."""

    machine_id: str
    # None for a machine drawn as a single box, which has no cluster.
    cluster: str | None
    anchor: str
    nodes: dict[str, str] = field(default_factory=dict)
    state_names: tuple[str, ...] = ()


def new_digraph(comment: str) -> graphviz.Digraph:
    """Return an empty digraph with the shared graph, node and edge attributes."""
    return graphviz.Digraph(
        comment=comment,
        graph_attr=dict(style.GRAPH_ATTRS),
        node_attr=dict(style.NODE_ATTRS),
        edge_attr=dict(style.EDGE_ATTRS),
    )


def machine_graph(
    mach: Machine,
    *,
    states: str | Iterable[str] | None = None,
    distance: int | None = None,
    from_state: str | Iterable[str] | None = None,
    hide_exception: bool = False,
) -> graphviz.Digraph:
    """Build the diagram of `mach`: states as nodes, relations as edges.

    Active states are filled (``Start`` green, ``Ready`` blue, ``Exception``
    and ``Err*`` red, the others yellow) and every node shows its tick. Auto
    states have a bold border and the word "auto", Multi states a double border
    and the word "multi". Each relation kind has its own edge colour, head and
    label. A mutual remove is drawn once, thicker, as "double remove". The groups
    of ``mach.groups()`` become clusters inside the machine's cluster.

    Args:
        mach: the machine to draw.
        states: draw only these states (in the machine's state order).
        distance: with `from_state`, draw only states at most this many
            relation hops away from it, following relations in both directions.
        from_state: a state or states to measure `distance` from. Without
            `distance` every state connected to them is drawn.
        hide_exception: leave out ``Exception`` while it is inactive.

    Returns:
        A ``graphviz.Digraph``, for :func:`to_svg` or :func:`to_dot`.

    Raises:
        StateError: `states` or `from_state` names a state the machine lacks.
        ValueError: `distance` is negative or given without `from_state`.
    """
    graph = new_digraph(f"asyncmachine {mach.id}")
    selected = select_states(
        mach,
        states=states,
        distance=distance,
        from_state=from_state,
        hide_exception=hide_exception,
    )
    add_machine_cluster(graph, mach, "m0", selected)
    return graph


def _names(mach: Machine, value: str | Iterable[str], argument: str) -> list[str]:
    names = [value] if isinstance(value, str) else list(value)
    known = mach.state_names()
    unknown = [name for name in names if name not in known]
    if unknown:
        raise StateError(
            f"{argument} names unknown states {unknown} for machine {mach.id!r}; "
            f"known states: {list(known)}"
        )
    return names


def _neighbours(schema: dict[str, State]) -> dict[str, set[str]]:
    """Return the states each state is related to, in either direction."""
    neighbours: dict[str, set[str]] = {name: set() for name in schema}
    for name, state in schema.items():
        for relation in RELATIONS:
            for target in getattr(state, relation):
                if target in neighbours and target != name:
                    neighbours[name].add(target)
                    neighbours[target].add(name)
    return neighbours


def select_states(
    mach: Machine,
    *,
    states: str | Iterable[str] | None = None,
    distance: int | None = None,
    from_state: str | Iterable[str] | None = None,
    hide_exception: bool = False,
) -> list[str]:
    """Return the states to draw, in state order; see :func:`machine_graph`."""
    names = list(mach.state_names())
    if states is not None:
        allowed = set(_names(mach, states, "states"))
        names = [name for name in names if name in allowed]

    if distance is not None and from_state is None:
        raise ValueError(
            f"distance={distance} needs from_state, the state to count hops from"
        )
    if distance is not None and distance < 0:
        raise ValueError(f"distance must be 0 or more hops, got {distance}")
    if from_state is not None:
        starts = _names(mach, from_state, "from_state")
        neighbours = _neighbours(mach.schema())
        reached = set(starts)
        frontier = set(starts)
        hops = 0
        while frontier and (distance is None or hops < distance):
            frontier = {n for s in frontier for n in neighbours[s]} - reached
            reached |= frontier
            hops += 1
        names = [name for name in names if name in reached]

    if hide_exception and not mach.is_active(EXCEPTION):
        names = [name for name in names if name != EXCEPTION]
    return names


def _state_node_attrs(
    mach: Machine, name: str, state: State, tick: int, active: bool
) -> dict[str, str]:
    fill, text = style.state_fill(name, active)
    flags = [flag for flag in ("auto", "multi") if getattr(state, flag)]
    label = f"{graphviz.escape(name)}\\ntick {tick}"
    if flags:
        label += "\\n" + " ".join(flags)
    node_style = "rounded,filled,bold" if state.auto else "rounded,filled"
    classes = ["state", "active" if active else "inactive", *flags]
    attrs = {
        "label": label,
        "fillcolor": fill,
        "fontcolor": text,
        "style": node_style,
        "id": f"M_{style.safe_id(mach.id)}__{style.safe_id(name)}",
        "class": " ".join(classes),
        "tooltip": f"{name} tick {tick} ({'active' if active else 'inactive'})",
    }
    if active:
        attrs["color"] = text
        attrs["penwidth"] = "2"
    if state.multi:
        attrs["peripheries"] = "2"
    return attrs


def add_machine_cluster(
    graph: graphviz.Digraph,
    mach: Machine,
    key: str,
    selected: list[str],
    *,
    border: str = style.CLUSTER_BORDER,
) -> MachineCluster:
    """Draw `mach` as a cluster of `graph` with the `selected` states.

    `key` prefixes every node name, so several machines fit in one graph.
    """
    schema = mach.schema()
    # A disposed machine reports an empty clock; its states are drawn at tick 0.
    clock = dict.fromkeys(mach.state_names(), 0)
    clock.update(mach.clock())
    active = set(mach.active_states())
    names = mach.state_names()
    cluster = MachineCluster(
        mach.id, f"cluster_{key}", f"{key}_anchor", state_names=names
    )
    for name in selected:
        cluster.nodes[name] = f"{key}_s{names.index(name)}"
    # Machine-level edges attach to a state node and are clipped at the cluster
    # border (lhead, ltail). An invisible node sits on the border instead, where
    # dot cannot clip, so it is used only for a machine without drawn states.
    if cluster.nodes:
        cluster.anchor = next(iter(cluster.nodes.values()))

    title = mach.id if not mach.is_disposed() else f"{mach.id} (disposed)"
    with graph.subgraph(name=f"cluster_{key}") as sub:
        sub.attr(
            label=graphviz.escape(title),
            labelloc="t",
            labeljust="l",
            fontsize="16",
            color=border,
            style="rounded",
            id=f"M_{style.safe_id(mach.id)}",
        )
        if not cluster.nodes:
            sub.node(cluster.anchor, label="", shape="point", style="invis")
        if mach.tags:
            tags = "\\n".join(f"#{graphviz.escape(tag)}" for tag in mach.tags)
            sub.node(
                f"{key}_tags",
                label=tags,
                shape="note",
                style="filled",
                fillcolor=style.BACKGROUND,
                fontcolor=style.FOREGROUND,
                color=style.GROUP_BORDER,
            )

        placed: set[str] = set()
        groups, order = mach.groups()
        for index, group in enumerate(order):
            # NOTE: graphviz draws a node in one cluster only, so a state listed
            # in several groups appears in the first of them.
            members = [
                s
                for s in groups.get(group, [])
                if s in cluster.nodes and s not in placed
            ]
            if not members:
                continue
            with sub.subgraph(name=f"cluster_{key}_g{index}") as group_graph:
                group_graph.attr(
                    label=graphviz.escape(group),
                    fontsize="11",
                    color=style.GROUP_BORDER,
                    style="dashed,rounded",
                )
                for name in members:
                    attrs = _state_node_attrs(
                        mach, name, schema[name], clock[name], name in active
                    )
                    group_graph.node(cluster.nodes[name], **attrs)
                    placed.add(name)
        for name in selected:
            if name in placed:
                continue
            attrs = _state_node_attrs(
                mach, name, schema[name], clock[name], name in active
            )
            sub.node(cluster.nodes[name], **attrs)

    _add_relation_edges(graph, schema, cluster.nodes)
    return cluster


def _add_relation_edges(
    graph: graphviz.Digraph, schema: dict[str, State], nodes: dict[str, str]
) -> None:
    """Add an edge per relation between two drawn states."""
    position = {name: i for i, name in enumerate(nodes)}
    for name, node in nodes.items():
        state = schema[name]
        for relation in RELATIONS:
            for target in getattr(state, relation):
                if target == name or target not in nodes:
                    continue
                kind = relation
                if relation == "remove" and name in schema[target].remove:
                    # A mutual remove is one edge, drawn from the earlier state.
                    if position[target] < position[name]:
                        continue
                    kind = "double remove"
                graph.edge(node, nodes[target], **style.RELATION_EDGES[kind])
