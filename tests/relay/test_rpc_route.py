"""The in-process rpc route: an rpc WebSocketEndpoint mounted on the relay."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest

from asyncmachine.rpc import WebSocketEndpoint, connect_ws
from tests.relay.helpers import TOKEN, WAIT_SECONDS, running_relay, ws_url
from tests.rpc.helpers import Calculator, ClientService


def test_rpc_route_calls_both_directions():
    async def scenario():
        service = Calculator()
        async with running_relay() as relay:
            endpoint = WebSocketEndpoint(service, allowed_origins=relay.allowed_origins)
            # Mounted after start, as an application may do.
            relay.add_rpc_route("/rpc", endpoint.handle, close=endpoint.close)
            conn = await connect_ws(
                ws_url(relay, "/rpc", token=TOKEN),
                ClientService(),
                origin=relay.url,
            )
            try:
                added = await conn.call("add", 2, 3)
                scheduled = await conn.call("call_client_later", 21)
                callback = await asyncio.wait_for(
                    service.callback_results.get(), WAIT_SECONDS
                )
            finally:
                await conn.aclose()
            return added, scheduled, callback

    assert asyncio.run(scenario()) == (5, "scheduled", 42)


def test_rpc_route_requires_token():
    async def scenario():
        async with running_relay() as relay:
            endpoint = WebSocketEndpoint(
                Calculator, allowed_origins=relay.allowed_origins
            )
            relay.add_rpc_route("/rpc", endpoint.handle, close=endpoint.close)
            with pytest.raises(aiohttp.WSServerHandshakeError) as caught:
                await connect_ws(ws_url(relay, "/rpc"), origin=relay.url)
            return caught.value.status, endpoint.connections

    status, connections = asyncio.run(scenario())
    assert status == 403
    assert connections == frozenset()


def test_relay_stop_closes_rpc_route_connections():
    async def scenario():
        async with running_relay() as relay:
            endpoint = WebSocketEndpoint(
                Calculator, allowed_origins=relay.allowed_origins
            )
            relay.add_rpc_route("/rpc", endpoint.handle, close=endpoint.close)
            conn = await connect_ws(
                ws_url(relay, "/rpc", token=TOKEN), origin=relay.url
            )
            assert await conn.call("add", 1, 1) == 2
            await relay.stop()
            await asyncio.wait_for(conn.wait_closed(), WAIT_SECONDS)
            return conn.closed, endpoint.connections

    closed, connections = asyncio.run(scenario())
    assert closed
    assert connections == frozenset()


def test_relay_stop_ends_rpc_route_without_close():
    """A route mounted without close= is cancelled by the HTTP server's stop."""

    async def scenario():
        async with running_relay() as relay:
            endpoint = WebSocketEndpoint(
                Calculator, allowed_origins=relay.allowed_origins
            )
            relay.add_rpc_route("/rpc", endpoint.handle)
            conn = await connect_ws(
                ws_url(relay, "/rpc", token=TOKEN), origin=relay.url
            )
            assert await conn.call("add", 1, 1) == 2
            await relay.stop()
            await asyncio.wait_for(conn.wait_closed(), WAIT_SECONDS)
            return conn.closed

    assert asyncio.run(scenario())
