"""Links of a network diagram, derived from live mirrors, pipes and sources.

Usage::

    from asyncmachine import rpc, vis

    server = await rpc.serve_source(foo, "127.0.0.1:0")
    mirror = await rpc.connect_mirror(server.addr, id="browser-bar")
    piped = rpc.pipe(bar, "SubmitMsg", mirror, "Msg")

    links = vis.links_for([mirror, piped, server])
    graph = vis.network_graph([foo, mirror, bar], links)
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from .._machine import Machine
from ._network import Link

__all__ = ["links_for"]

# The rpc package names the client part of a mirror session "rc-<client id>",
# and a SourceSession exposes only the client id.
_CLIENT_PREFIX = "rc-"


def links_for(objects: Iterable[Any], *, rpc: bool = True) -> list[Link]:
    """Derive the links between machines from machines and rpc objects.

    The result is meant for ``network_graph(machines, links)`` and
    ``live(..., network=True, links=...)``. Each object gives:

    - :class:`~asyncmachine.rpc.Mirror`: a ``mirror`` link from the mirror to
      its source machine. With `rpc`, also an ``rpc`` link from the mirror's
      client part (``rc-<client id>``) to the session machine serving it
      (``rs-<source id>-<n>``) when the session is among `objects`, and to
      the source machine otherwise.
    - :class:`~asyncmachine.rpc.BlockingMirror` and
      :class:`~asyncmachine.rpc.Peer`: the links of their mirrors.
    - :class:`~asyncmachine.rpc.Pipe`: a ``pipe`` link from the source state
      to the target state, while the pipe is open.
    - :class:`~asyncmachine.rpc.SourceServer`,
      :class:`~asyncmachine.rpc.SourceWebSocketHandler`,
      :class:`~asyncmachine.rpc.StateSource` and
      :class:`~asyncmachine.rpc.SourceSession`: with `rpc`, an ``rpc`` link
      from the client part of each open session's mirror to the session
      machine.
    - any other :class:`~asyncmachine.Machine`: no link. The list of machines
      to draw can be passed along with the rpc objects.

    Links come in the order of `objects`, each link once. A machine that a
    link names but the diagram does not draw appears as a "half" machine.

    Args:
        objects: machines and rpc objects, in any mix.
        rpc: also return the ``rpc`` links of the sync sessions.

    Raises:
        TypeError: `objects` is not an iterable, or contains another type.
    """
    if isinstance(objects, (str, bytes)) or not isinstance(objects, Iterable):
        raise TypeError(
            f"links_for takes an iterable of machines and rpc objects, got "
            f"{objects!r}; wrap a single object in a list"
        )
    items = list(objects)
    rpc_module = _rpc_module()
    sessions = _sessions_of(items, rpc_module)

    links: dict[Link, None] = {}
    for item in items:
        for link in _links_of(item, rpc_module, sessions, rpc):
            links[link] = None
    return list(links)


def _rpc_module() -> Any:
    """Return the rpc package, or None when it cannot be imported."""
    try:
        from .. import rpc
    except ImportError:
        # Without the rpc package (rpyc missing) no rpc object can exist, so
        # only machines are accepted.
        return None
    return rpc


def _session_owners(rpc_module: Any) -> tuple[Any, ...]:
    """Return the rpc classes that have a ``sessions`` property."""
    return (
        rpc_module.SourceServer,
        rpc_module.SourceWebSocketHandler,
        rpc_module.StateSource,
    )


def _sessions_of(items: list[Any], rpc_module: Any) -> list[Any]:
    """Return the open source sessions of `items`, without repeats."""
    if rpc_module is None:
        return []
    owners = _session_owners(rpc_module)
    found: dict[int, Any] = {}
    for item in items:
        if isinstance(item, owners):
            candidates = item.sessions
        elif isinstance(item, rpc_module.SourceSession):
            candidates = (item,)
        else:
            continue
        for session in candidates:
            if not session.closed:
                found.setdefault(id(session), session)
    return list(found.values())


def _links_of(
    item: Any, rpc_module: Any, sessions: list[Any], with_rpc: bool
) -> list[Link]:
    if rpc_module is not None:
        if isinstance(item, rpc_module.Mirror):
            return _mirror_links(item, sessions, with_rpc)
        if isinstance(item, rpc_module.BlockingMirror):
            return _mirror_links(item.mirror, sessions, with_rpc)
        if isinstance(item, rpc_module.Peer):
            return [
                link
                for mirror in item.mirrors
                for link in _mirror_links(mirror, sessions, with_rpc)
            ]
        if isinstance(item, rpc_module.Pipe):
            return [] if item.closed else [_pipe_link(item)]
        if isinstance(item, _session_owners(rpc_module)):
            if not with_rpc:
                return []
            return [_session_link(s) for s in item.sessions if not s.closed]
        if isinstance(item, rpc_module.SourceSession):
            if not with_rpc or item.closed:
                return []
            return [_session_link(item)]
    if isinstance(item, Machine):
        return []
    raise TypeError(
        f"links_for cannot derive links from {item!r}; pass machines, mirrors, "
        "pipes, peers, source servers, state sources or source sessions"
    )


def _mirror_links(mirror: Any, sessions: list[Any], with_rpc: bool) -> list[Link]:
    source_id = mirror.remote_id
    # A mirror has no source id before its first handshake completes.
    if not source_id:
        return []
    links = [Link("mirror", mirror.id, None, source_id, None)]
    if not with_rpc:
        return links
    client_id = mirror.client.id
    matches = [
        session.machine.id
        for session in sessions
        if session.source.id == source_id
        and _CLIENT_PREFIX + session.client_id == client_id
    ]
    # NOTE: the public attributes do not distinguish two open sessions of one
    # client id, so the link then goes to the source machine instead.
    server_id = matches[0] if len(matches) == 1 else source_id
    links.append(Link("rpc", client_id, None, server_id, None))
    return links


def _pipe_link(piped: Any) -> Link:
    source, target = piped.source.id, piped.target.id
    return Link("pipe", source, piped.state, target, piped.target_state)


def _session_link(session: Any) -> Link:
    client_id = _CLIENT_PREFIX + session.client_id
    return Link("rpc", client_id, None, session.machine.id, None)
