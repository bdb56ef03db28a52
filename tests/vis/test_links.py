"""Tests of links_for: links from real sources, mirrors and pipes on 127.0.0.1."""

from __future__ import annotations

import asyncio
import html
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass

import pytest

import asyncmachine as am
from asyncmachine import rpc, vis
from asyncmachine.demo.states import BAR_SCHEMA, FOO_SCHEMA

MIRROR_LINK = vis.Link("mirror", "rnm-browser-bar", None, "server-foo", None)
PIPE_LINK = vis.Link("pipe", "browser-bar", "SubmitMsg", "rnm-browser-bar", "Msg")


@dataclass
class Network:
    foo: am.Machine
    bar: am.Machine
    server: rpc.SourceServer
    mirror: rpc.Mirror


@asynccontextmanager
async def foo_network() -> AsyncIterator[Network]:
    """Serve server-foo on 127.0.0.1 and connect a mirror of it for browser-bar."""
    foo = am.Machine(FOO_SCHEMA, id="server-foo")
    bar = am.Machine(BAR_SCHEMA, id="browser-bar")
    foo.add("Start")
    bar.add("Start")
    server = await rpc.serve_source(
        foo, "127.0.0.1:0", push_interval=0, plain_service=None
    )
    try:
        mirror = await rpc.connect_mirror(server.addr, id="browser-bar")
        try:
            yield Network(foo, bar, server, mirror)
        finally:
            await mirror.close()
    finally:
        await server.close()


def run(scenario: Callable[[Network], Awaitable[None]]) -> None:
    async def main() -> None:
        async with foo_network() as net:
            await scenario(net)

    asyncio.run(main())


def edges_of(dot: str, kind: str) -> list[str]:
    return [line for line in dot.splitlines() if f'class="link-{kind}"' in line]


def node_of(mach: am.Machine, index: int, state: str) -> str:
    """Return the DOT node of `state` of the machine drawn `index`-th."""
    return f"m{index}_s{mach.state_names().index(state)}"


def test_mirror_link_to_source() -> None:
    async def scenario(net: Network) -> None:
        links = vis.links_for([net.foo, net.mirror], rpc=False)

        assert links == [MIRROR_LINK]

    run(scenario)


def test_mirror_network_has_two_clusters() -> None:
    async def scenario(net: Network) -> None:
        machines = [net.foo, net.mirror]

        dot = vis.to_dot(vis.network_graph(machines, vis.links_for(machines)))

        assert "subgraph cluster_m0 {" in dot
        assert "subgraph cluster_m1 {" in dot
        assert 'label="server-foo"' in dot
        assert 'label="rnm-browser-bar"' in dot
        mirror = edges_of(dot, "mirror")
        assert len(mirror) == 1
        assert "ltail=cluster_m1" in mirror[0]
        assert "lhead=cluster_m0" in mirror[0]

    run(scenario)


def test_pipe_link_between_states() -> None:
    async def scenario(net: Network) -> None:
        piped = rpc.pipe(net.bar, "SubmitMsg", net.mirror, "Msg")
        machines = [net.foo, net.mirror, net.bar]

        links = vis.links_for([*machines, piped], rpc=False)
        dot = vis.to_dot(vis.network_graph(machines, links))

        assert PIPE_LINK in links
        pipe = edges_of(dot, "pipe")
        assert len(pipe) == 1
        tail = node_of(net.bar, 2, "SubmitMsg")
        head = node_of(net.mirror, 1, "Msg")
        assert pipe[0].strip().startswith(f"{tail} -> {head}")
        assert len(edges_of(dot, "mirror")) == 1

    run(scenario)


def test_piped_mutation_reaches_source() -> None:
    async def scenario(net: Network) -> None:
        rpc.pipe(net.bar, "SubmitMsg", net.mirror, "Msg")

        net.bar.add("SubmitMsg", {"msg": "hi"})
        await net.foo.when("Msg")
        await net.mirror.when("Msg")

        assert net.mirror.clock() == net.foo.clock()

    run(scenario)


def test_closed_pipe_has_no_link() -> None:
    async def scenario(net: Network) -> None:
        piped = rpc.pipe(net.mirror, "Bored", net.bar, "Msg")
        piped.close()

        links = vis.links_for([piped])

        assert links == []

    run(scenario)


def test_rpc_link_to_session() -> None:
    async def scenario(net: Network) -> None:
        (session,) = net.server.sessions

        links = vis.links_for([net.mirror, net.server])

        assert session.machine.id == "rs-server-foo-1"
        assert links == [
            MIRROR_LINK,
            vis.Link("rpc", "rc-browser-bar", None, "rs-server-foo-1", None),
        ]

    run(scenario)


def test_rpc_link_without_session_to_source() -> None:
    async def scenario(net: Network) -> None:
        links = vis.links_for([net.mirror])

        assert vis.Link("rpc", "rc-browser-bar", None, "server-foo", None) in links

    run(scenario)


def test_source_side_links_clients() -> None:
    async def scenario(net: Network) -> None:
        source = net.server.source
        (session,) = source.sessions
        expected = [vis.Link("rpc", "rc-browser-bar", None, session.machine.id, None)]

        assert vis.links_for([net.server]) == expected
        assert vis.links_for([source]) == expected
        assert vis.links_for([session]) == expected
        assert vis.links_for([session], rpc=False) == []

    run(scenario)


def test_map_view_of_rpc_parts() -> None:
    async def scenario(net: Network) -> None:
        (session,) = net.server.sessions
        machines = [net.foo, net.mirror, net.mirror.client, session.machine]

        links = vis.links_for([*machines, net.server])
        dot = vis.to_dot(vis.network_graph(machines, links, states=False))

        assert "cluster" not in dot
        assert len(edges_of(dot, "mirror")) == 1
        rpc_edges = edges_of(dot, "rpc")
        assert len(rpc_edges) == 1
        assert rpc_edges[0].strip().startswith("m2_anchor -> m3_anchor")
        assert 'class="machine half"' not in dot

    run(scenario)


def test_undrawn_client_is_half_machine() -> None:
    async def scenario(net: Network) -> None:
        dot = vis.to_dot(
            vis.network_graph([net.foo], vis.links_for([net.server]), states=False)
        )

        halves = [line for line in dot.splitlines() if 'class="machine half"' in line]
        assert len(halves) == 2
        assert any("rc-browser-bar" in line for line in halves)
        assert any("rs-server-foo-1" in line for line in halves)

    run(scenario)


def test_peer_gives_its_mirrors_links() -> None:
    async def scenario(net: Network) -> None:
        links = vis.links_for([net.mirror.peer], rpc=False)

        assert links == [MIRROR_LINK]

    run(scenario)


def test_links_are_unique() -> None:
    async def scenario(net: Network) -> None:
        (session,) = net.server.sessions

        links = vis.links_for([net.mirror, net.server, net.mirror, session])

        assert len(links) == 2
        assert len(set(links)) == 2

    run(scenario)


def test_closed_mirror_session_has_no_link() -> None:
    async def scenario(net: Network) -> None:
        (session,) = net.server.sessions

        await net.mirror.close()
        await session.machine.when_disposed()

        assert session.closed
        assert vis.links_for([net.server, session]) == []

    run(scenario)


def test_plain_machines_have_no_links() -> None:
    foo = am.Machine(FOO_SCHEMA, id="plain-foo")
    bar = am.Machine(BAR_SCHEMA, id="plain-bar")

    assert vis.links_for([foo, bar]) == []
    assert vis.links_for(iter([foo])) == []


def test_invalid_objects_raise() -> None:
    foo = am.Machine(FOO_SCHEMA, id="plain-foo")

    with pytest.raises(TypeError, match="iterable of machines"):
        vis.links_for(foo)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="iterable of machines"):
        vis.links_for("server-foo")
    with pytest.raises(TypeError, match="cannot derive links from 42"):
        vis.links_for([foo, 42])


@pytest.mark.usefixtures("need_dot")
def test_network_svg_has_links() -> None:
    async def scenario(net: Network) -> None:
        piped = rpc.pipe(net.bar, "SubmitMsg", net.mirror, "Msg")
        machines = [net.foo, net.mirror, net.bar]

        graph = vis.network_graph(machines, vis.links_for([*machines, piped]))
        # dot writes "-" in attribute values as "&#45;".
        svg = html.unescape(vis.to_svg(graph))

        assert 'class="edge link-mirror"' in svg
        assert 'class="edge link-pipe"' in svg
        assert 'class="edge link-rpc"' in svg

    run(scenario)
