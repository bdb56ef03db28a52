"""The diagram of several machines and the links between them.

Usage::

    from asyncmachine import vis

    graph = vis.network_graph(
        [foo, foo_mirror],
        links=[vis.Link("mirror", foo_mirror.id, None, foo.id, None)],
    )
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, NamedTuple

from .._errors import StateError
from . import _style as style
from ._graphviz import graphviz
from ._machine import MachineCluster, add_machine_cluster, new_digraph, select_states

if TYPE_CHECKING:
    from .._machine import Machine

__all__ = ["LINK_KINDS", "Link", "network_graph"]

LINK_KINDS = ("mirror", "pipe", "rpc")


class Link(NamedTuple):
    """A connection between two machines, or between two of their states.

    Kinds: ``mirror`` (`from_machine` is a mirror of `to_machine`), ``pipe``
    (a state of `from_machine` is piped to a state of `to_machine`) and ``rpc``
    (`from_machine` is an RPC client of `to_machine`). A state of None links
    the machine as a whole.
    """

    kind: str
    from_machine: str
    from_state: str | None
    to_machine: str
    to_state: str | None


class _Endpoint(NamedTuple):
    machine_id: str
    node: str
    cluster: str | None
    # A state name shown next to the edge when its node is not drawn.
    label: str | None


def network_graph(
    machines: Iterable[Machine],
    links: Iterable[Link | Sequence[str | None]] = (),
    *,
    states: bool = True,
    hide_exception: bool = False,
) -> graphviz.Digraph:
    """Build the diagram of `machines` and the `links` between them.

    Each machine is a cluster drawn as :func:`machine_graph` draws it. A link
    naming a machine that is not in `machines` draws that machine as a plain
    box ("half" machine) holding only its id. A machine whose ``parent_id`` is
    another drawn machine gets a "parent" edge to it.

    Args:
        machines: the machines to draw, with unique ids.
        links: ``Link`` tuples ``(kind, from_machine_id, from_state_or_None,
            to_machine_id, to_state_or_None)``, kind one of ``mirror``, ``pipe``
            and ``rpc``.
        states: draw states and relations. With False each machine is one box,
            and only links and parents are drawn (a map of the machines).
        hide_exception: leave out ``Exception`` while it is inactive.

    Raises:
        ValueError: an unknown link kind, a malformed link or a repeated id.
        StateError: a link names a state that its drawn machine lacks.
    """
    machine_list = list(machines)
    graph = new_digraph("asyncmachine network")
    drawn: dict[str, MachineCluster] = {}
    for index, mach in enumerate(machine_list):
        if mach.id in drawn:
            raise ValueError(f"machine id {mach.id!r} is given twice")
        key = f"m{index}"
        if states:
            selected = select_states(mach, hide_exception=hide_exception)
            drawn[mach.id] = add_machine_cluster(graph, mach, key, selected)
        else:
            drawn[mach.id] = _add_machine_box(graph, mach, key)

    halves: dict[str, str] = {}
    for raw in links:
        link = _parse_link(raw)
        tail = _endpoint(graph, link.from_machine, link.from_state, drawn, halves)
        head = _endpoint(graph, link.to_machine, link.to_state, drawn, halves)
        attrs = dict(style.LINK_EDGES[link.kind])
        _connect(graph, tail, head, attrs)

    for mach in machine_list:
        parent = mach.parent_id
        if parent is None or parent not in drawn:
            continue
        child_cluster = drawn[mach.id]
        parent_cluster = drawn[parent]
        _connect(
            graph,
            _Endpoint(mach.id, child_cluster.anchor, child_cluster.cluster, None),
            _Endpoint(parent, parent_cluster.anchor, parent_cluster.cluster, None),
            dict(style.LINK_EDGES["parent"]),
        )
    return graph


def _add_machine_box(
    graph: graphviz.Digraph, mach: Machine, key: str
) -> MachineCluster:
    active = " ".join(mach.active_states())
    graph.node(
        f"{key}_anchor",
        label=f"{graphviz.escape(mach.id)}\\n{graphviz.escape(active)}",
        shape="box",
        style="rounded",
        color=style.CLUSTER_BORDER,
        fontcolor=style.FOREGROUND,
        id=f"M_{style.safe_id(mach.id)}",
        **{"class": "machine"},
    )
    return MachineCluster(
        mach.id, None, f"{key}_anchor", state_names=mach.state_names()
    )


def _parse_link(raw: Link | Sequence[str | None]) -> Link:
    try:
        link = Link(*raw)
    except TypeError:
        raise ValueError(
            f"invalid link {raw!r}: expected (kind, from_machine_id, "
            f"from_state_or_None, to_machine_id, to_state_or_None)"
        ) from None
    if link.kind not in LINK_KINDS:
        raise ValueError(
            f"invalid link kind {link.kind!r} in {raw!r}; use one of {LINK_KINDS}"
        )
    for value in (link.from_machine, link.to_machine):
        if not isinstance(value, str) or not value:
            raise ValueError(f"invalid link {raw!r}: machine ids must be strings")
    return link


def _endpoint(
    graph: graphviz.Digraph,
    mach_id: str,
    state: str | None,
    drawn: dict[str, MachineCluster],
    halves: dict[str, str],
) -> _Endpoint:
    """Return the node a link attaches to, drawing a half machine if needed."""
    cluster = drawn.get(mach_id)
    if cluster is None:
        node = halves.get(mach_id)
        if node is None:
            node = f"half{len(halves)}"
            halves[mach_id] = node
            graph.node(
                node,
                label=graphviz.escape(mach_id),
                shape="box",
                style="dashed,rounded",
                color=style.HALF_BORDER,
                fontcolor=style.FOREGROUND,
                id=f"M_{style.safe_id(mach_id)}",
                **{"class": "machine half"},
            )
        return _Endpoint(mach_id, node, None, state)

    if state is None:
        return _Endpoint(mach_id, cluster.anchor, cluster.cluster, None)
    node = cluster.nodes.get(state)
    if node is not None:
        return _Endpoint(mach_id, node, None, None)
    if state not in cluster.state_names:
        raise StateError(
            f"link names unknown state {state!r} of machine {mach_id!r}; "
            f"known states: {list(cluster.state_names)}"
        )
    # The state is hidden, or the machine is a box: attach to the machine and
    # show the state's name at the edge's end.
    return _Endpoint(mach_id, cluster.anchor, cluster.cluster, state)


def _connect(
    graph: graphviz.Digraph,
    tail: _Endpoint,
    head: _Endpoint,
    attrs: dict[str, str],
) -> None:
    # Clipping at a cluster that contains the other end makes dot warn and skip it.
    same_machine = tail.machine_id == head.machine_id
    if tail.cluster is not None and not same_machine:
        attrs["ltail"] = tail.cluster
    if head.cluster is not None and not same_machine:
        attrs["lhead"] = head.cluster
    if tail.label is not None:
        attrs["taillabel"] = graphviz.escape(tail.label)
    if head.label is not None:
        attrs["headlabel"] = graphviz.escape(head.label)
    graph.edge(tail.node, head.node, **attrs)
