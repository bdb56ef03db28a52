"""Sync over WebSocket: a real aiohttp server, and one socket carrying two sessions."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import pytest
from aiohttp import web

import asyncmachine as am
from asyncmachine import rpc
from tests.rpc.helpers import LOCALHOST

FOO_SCHEMA = {
    "Start": am.State(add=["Ready"]),
    "Ready": am.State(require=["Start"]),
    "Msg": am.State(multi=True),
    "Bored": am.State(),
}
BAR_SCHEMA = {
    "Start": am.State(),
    "Msg": am.State(multi=True),
    "SubmitMsg": am.State(multi=True),
}
ORIGIN = "http://127.0.0.1:8000"


def test_serve_source_over_websocket():
    async def scenario():
        source = am.Machine(FOO_SCHEMA, id="foo")
        server = await rpc.serve_source(
            source, transport="ws", path="/rpc", push_interval=0, plain_service=None
        )
        assert server.addr.startswith("ws://127.0.0.1:")
        mirror = await rpc.connect_mirror(server.addr, id="bar")
        try:
            assert await mirror.add("Start") == am.Result.EXECUTED
            assert mirror.is_active("Ready")
            source.add("Bored")
            await mirror.when("Bored")
            assert mirror.clock() == source.clock()
        finally:
            await mirror.close()
            await server.close()

    asyncio.run(scenario())


async def start_app(handler: rpc.SourceWebSocketHandler) -> tuple[web.AppRunner, str]:
    """Mount the handler on a fresh aiohttp app, as a relay would."""
    app = web.Application()
    app.router.add_get("/rpc", handler.handle)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, LOCALHOST, 0)
    await site.start()
    port = runner.addresses[0][1]
    return runner, f"ws://{LOCALHOST}:{port}/rpc"


def test_handler_rejects_foreign_origin():
    async def scenario():
        source = am.Machine(FOO_SCHEMA, id="foo")
        handler = rpc.source_ws_handler(
            source, allowed_origins={ORIGIN}, plain_service=None
        )
        runner, url = await start_app(handler)
        try:
            with pytest.raises(aiohttp.WSServerHandshakeError):
                await rpc.connect_mirror(
                    url,
                    id="bar",
                    origin="http://evil.example",
                    retry=rpc.RetryPolicy(attempts=0),
                )
            mirror = await rpc.connect_mirror(url, id="bar", origin=ORIGIN)
            assert mirror.remote_id == "foo"
            await mirror.close()
        finally:
            await handler.close()
            await runner.cleanup()

    asyncio.run(scenario())


def test_one_websocket_carries_sessions_both_ways():
    """The browser's mirror of foo and the server's mirror of bar share a socket."""

    async def scenario():
        foo = am.Machine(FOO_SCHEMA, id="server-foo")
        bar = am.Machine(BAR_SCHEMA, id="browser-bar-k3j")
        server_mirrors: asyncio.Queue[rpc.Mirror] = asyncio.Queue()
        tasks: list[asyncio.Task[Any]] = []

        async def mirror_bar(peer: rpc.Peer) -> None:
            mirror = await peer.mirror(
                id="server-foo-of-k3j", source_id="browser-bar-k3j"
            )
            await server_mirrors.put(mirror)

        def on_peer(peer: rpc.Peer) -> None:
            tasks.append(asyncio.get_running_loop().create_task(mirror_bar(peer)))

        handler = rpc.source_ws_handler(
            foo,
            push_interval=0,
            allowed_origins={ORIGIN},
            plain_service=None,
            on_peer=on_peer,
        )
        runner, url = await start_app(handler)
        bar_source = rpc.StateSource(bar, push_interval=0)
        peer = await rpc.open_peer(
            url, sources=[bar_source], origin=ORIGIN, name="browser"
        )
        try:
            foo_mirror = await peer.mirror(id="browser-bar-k3j", source_id="server-foo")
            bar_mirror = await server_mirrors.get()
            assert len(handler.peers) == 1
            (server_peer,) = handler.peers
            assert bar_mirror.peer is server_peer

            # Browser to server: bar submits, and adds Msg to its mirror of foo.
            bar.add("SubmitMsg")
            assert await foo_mirror.add("Msg", {"msg": "hi"}) == am.Result.EXECUTED
            assert foo.is_active("Msg")
            await bar_mirror.when("SubmitMsg")

            # Server to browser: foo gets bored, and adds Msg to its mirror of bar.
            foo.add("Bored")
            assert await bar_mirror.add("Msg") == am.Result.EXECUTED
            assert bar.is_active("Msg")
            await foo_mirror.when("Bored")
            assert foo_mirror.clock() == foo.clock()
            assert bar_mirror.clock() == bar.clock()

            # After a lost socket the browser redials and both sessions return.
            server_peer.conn.abort("dropped by the test")
            second = await server_mirrors.get()
            await foo_mirror.client.when("Ready")
            foo.add("Start")
            await foo_mirror.when("Ready")
            bar.add("Start")
            await second.when("Start")
            assert second.clock() == bar.clock()
            assert foo_mirror.clock() == foo.clock()
        finally:
            await peer.close()
            await handler.close()
            await runner.cleanup()
            for task in tasks:
                task.cancel()

    asyncio.run(scenario())
