"""AsyncConnection over a real aiohttp WebSocket server on 127.0.0.1."""

from __future__ import annotations

import asyncio
import logging
import os

import aiohttp
import pytest
from aiohttp import web

from asyncmachine.rpc import (
    ConnectionClosedError,
    ConnectionOptions,
    WebSocketEndpoint,
    connect_tcp,
    connect_ws,
    serve_tcp,
    serve_ws,
)
from tests.rpc.helpers import LOCALHOST, Calculator, ClientService

PAGE_ORIGIN = "http://127.0.0.1:8000"


def test_ws_calls_both_directions():
    async def scenario():
        service = Calculator()
        server = await serve_ws(service, LOCALHOST, 0)
        try:
            conn = await connect_ws(server.url, ClientService())
            assert await conn.call("add", 1, 2) == 3
            (server_conn,) = server.endpoint.connections
            assert await server_conn.call("double", 4) == 8
            assert await conn.call("call_client_later", 7) == "scheduled"
            assert await service.callback_results.get() == 14
            await conn.aclose()
        finally:
            await server.close()

    asyncio.run(scenario())


def test_ws_concurrent_and_compressed_calls():
    async def scenario():
        server = await serve_ws(Calculator, LOCALHOST, 0)
        try:
            conn = await connect_ws(server.url)
            text = "tick " * 50_000
            calls = [conn.call("add", i, 1) for i in range(50)]
            calls.append(conn.call("echo", text))
            results = await asyncio.gather(*calls)
            assert results[:50] == [i + 1 for i in range(50)]
            assert results[50] == text
            await conn.aclose()
        finally:
            await server.close()

    asyncio.run(scenario())


def test_ws_endpoint_mounted_in_app():
    async def scenario():
        endpoint = WebSocketEndpoint(Calculator, allowed_origins={PAGE_ORIGIN})
        app = web.Application()
        app.router.add_get("/custom/path", endpoint.handle)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, LOCALHOST, 0)
        await site.start()
        port = runner.addresses[0][1]
        try:
            url = f"ws://{LOCALHOST}:{port}/custom/path"
            conn = await connect_ws(url, origin=PAGE_ORIGIN)
            assert await conn.call("add", 2, 3) == 5
            await conn.aclose()
        finally:
            await endpoint.close()
            await runner.cleanup()

    asyncio.run(scenario())


def test_ws_rejects_unlisted_origin():
    async def scenario():
        server = await serve_ws(Calculator, LOCALHOST, 0, allowed_origins={PAGE_ORIGIN})
        try:
            with pytest.raises(aiohttp.WSServerHandshakeError) as caught:
                await connect_ws(server.url, origin="http://evil.example")
            assert caught.value.status == 403
            # Clients that send no Origin, and the allowed page, get in.
            for origin in (None, PAGE_ORIGIN):
                conn = await connect_ws(server.url, origin=origin)
                assert await conn.call("add", 1, 1) == 2
                await conn.aclose()
        finally:
            await server.close()

    asyncio.run(scenario())


def test_ws_pending_calls_fail_on_server_close():
    async def scenario():
        server = await serve_ws(Calculator, LOCALHOST, 0)
        try:
            await connect_ws(server.url, ClientService())
            (server_conn,) = server.endpoint.connections
            server_conn.close()
            with pytest.raises(ConnectionClosedError):
                await server_conn.call("double", 1)
        finally:
            await server.close()

    asyncio.run(scenario())


def test_ws_client_call_fails_when_server_goes_away():
    async def scenario():
        server = await serve_ws(Calculator, LOCALHOST, 0)
        conn = await connect_ws(server.url)
        await server.close()
        await conn.wait_closed(timeout=5)
        with pytest.raises(ConnectionClosedError):
            await conn.call("add", 1, 2)

    asyncio.run(scenario())


def test_ws_oversized_frame_closes_only_that_connection(caplog):
    async def scenario():
        options = ConnectionOptions(max_frame_size=1024)
        server = await serve_ws(Calculator, LOCALHOST, 0, options=options)
        try:
            good = await connect_ws(server.url)
            bad = await connect_ws(server.url)
            with pytest.raises(ConnectionClosedError):
                await bad.call("echo", os.urandom(4000), timeout=5)
            assert await good.call("add", 1, 2) == 3
            await good.aclose()
        finally:
            await server.close()

    caplog.set_level(logging.ERROR, logger="asyncmachine.rpc")
    asyncio.run(scenario())
    assert len(caplog.records) == 1
    assert "exceeds the limit of 1024 bytes" in caplog.records[0].getMessage()
    assert caplog.records[0].conn_id.startswith("ws-")


def test_ws_text_message_closes_connection(caplog):
    async def scenario():
        server = await serve_ws(Calculator, LOCALHOST, 0)
        try:
            good = await connect_ws(server.url)
            async with aiohttp.ClientSession() as session:
                async with session.ws_connect(server.url) as ws:
                    await ws.send_str("hello")
                    message = await ws.receive()
                    assert message.type in (
                        aiohttp.WSMsgType.CLOSE,
                        aiohttp.WSMsgType.CLOSED,
                    )
            assert await good.call("add", 1, 2) == 3
            await good.aclose()
        finally:
            await server.close()

    caplog.set_level(logging.ERROR, logger="asyncmachine.rpc")
    asyncio.run(scenario())
    assert len(caplog.records) == 1
    assert "text WebSocket message" in caplog.records[0].getMessage()


def test_ws_messages_split_frames_arbitrarily():
    async def scenario():
        server = await serve_ws(Calculator, LOCALHOST, 0)
        try:
            conn = await connect_ws(server.url)
            await conn.get_root()
            original_write = conn._transport.write

            async def write_in_pieces(data):
                # Three WebSocket messages per write, cutting through frames.
                step = max(1, len(data) // 3)
                for start in range(0, len(data), step):
                    await original_write(data[start : start + step])

            conn._transport.write = write_in_pieces
            assert await conn.call("add", 40, 2) == 42
            await conn.aclose()
        finally:
            await server.close()

    asyncio.run(scenario())


def test_ws_relay_bytes_to_tcp_server():
    """A WebSocket-to-TCP byte bridge in front of a TCP server works unchanged."""

    async def scenario():
        tcp_server = await serve_tcp(Calculator, LOCALHOST, 0)

        async def bridge(request):
            ws = web.WebSocketResponse()
            await ws.prepare(request)
            reader, writer = await asyncio.open_connection(LOCALHOST, tcp_server.port)

            async def tcp_to_ws():
                while data := await reader.read(65536):
                    await ws.send_bytes(data)
                await ws.close()

            pump = asyncio.create_task(tcp_to_ws())
            async for message in ws:
                writer.write(message.data)
                await writer.drain()
            writer.close()
            pump.cancel()
            return ws

        app = web.Application()
        app.router.add_get("/bridge", bridge)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, LOCALHOST, 0)
        await site.start()
        port = runner.addresses[0][1]
        try:
            conn = await connect_ws(f"ws://{LOCALHOST}:{port}/bridge")
            assert await conn.call("add", 5, 6) == 11
            await conn.aclose()
        finally:
            await runner.cleanup()
            await tcp_server.close()

    asyncio.run(scenario())


def test_tcp_and_ws_clients_share_service_code():
    async def scenario():
        tcp_server = await serve_tcp(Calculator, LOCALHOST, 0)
        ws_server = await serve_ws(Calculator, LOCALHOST, 0)
        try:
            tcp_conn = await connect_tcp(LOCALHOST, tcp_server.port)
            ws_conn = await connect_ws(ws_server.url)
            assert type(tcp_conn) is type(ws_conn)
            assert await tcp_conn.call("add", 1, 2) == await ws_conn.call("add", 1, 2)
            await tcp_conn.aclose()
            await ws_conn.aclose()
        finally:
            await ws_server.close()
            await tcp_server.close()

    asyncio.run(scenario())
