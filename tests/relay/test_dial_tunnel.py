"""Dial tunnels, message size limits, and a relay stop that closes everything."""

from __future__ import annotations

import asyncio
import threading

import aiohttp
import pytest
import rpyc

from asyncmachine.relay import serve_tunnel
from tests.relay.helpers import (
    LOCALHOST,
    MACHINE_ID,
    STOCK_CONFIG,
    TOKEN,
    WAIT_SECONDS,
    BrowserService,
    EchoServer,
    running_relay,
    wait_until,
    ws_url,
)

MAX_MESSAGE_SIZE = 4096


async def open_dial(session, relay, port):
    return await session.ws_connect(
        ws_url(relay, "/tunnel/dial", token=TOKEN, addr=f"{LOCALHOST}:{port}"),
        origin=relay.url,
    )


async def receive_exactly(ws, size):
    data = b""
    while len(data) < size:
        data += await ws.receive_bytes()
    return data


def test_dial_tunnel_echo():
    async def scenario():
        echo = EchoServer()
        port = await echo.start()
        try:
            async with running_relay(dial_allowlist=[f"{LOCALHOST}:{port}"]) as relay:
                async with aiohttp.ClientSession() as session:
                    ws = await open_dial(session, relay, port)
                    await ws.send_bytes(b"hello")
                    first = await receive_exactly(ws, 5)
                    payload = bytes(range(256)) * 40
                    await ws.send_bytes(payload)
                    second = await receive_exactly(ws, len(payload))
                    await ws.close()
                    echo_end = await asyncio.wait_for(
                        echo.clients_done.get(), WAIT_SECONDS
                    )
                    return first, second == payload, echo_end
        finally:
            await echo.close()

    first, second_matches, echo_end = asyncio.run(scenario())
    assert first == b"hello"
    assert second_matches
    # Closing the WebSocket closed the TCP connection.
    assert echo_end == "peer closed"


def test_dial_tunnel_tcp_close_closes_websocket():
    async def scenario():
        server_writers = []

        async def close_at_once(reader, writer):
            writer.write(b"bye")
            await writer.drain()
            writer.close()
            server_writers.append(writer)

        server = await asyncio.start_server(close_at_once, LOCALHOST, 0)
        port = server.sockets[0].getsockname()[1]
        try:
            async with running_relay(dial_allowlist=[f"{LOCALHOST}:{port}"]) as relay:
                async with aiohttp.ClientSession() as session:
                    ws = await open_dial(session, relay, port)
                    greeting = await receive_exactly(ws, 3)
                    end = await ws.receive()
                    return greeting, end.type
        finally:
            server.close()
            await server.wait_closed()

    greeting, end_type = asyncio.run(scenario())
    assert greeting == b"bye"
    assert end_type is aiohttp.WSMsgType.CLOSE


def test_dial_outside_allowlist_rejected():
    async def scenario():
        echo = EchoServer()
        port = await echo.start()
        try:
            async with running_relay(dial_allowlist=["127.0.0.1:1"]) as relay:
                statuses = []
                async with aiohttp.ClientSession() as session:
                    for address in (
                        f"{LOCALHOST}:{port}",
                        f"localhost:{port}",
                        "10.0.0.1:22",
                        "bad",
                    ):
                        try:
                            await session.ws_connect(
                                ws_url(
                                    relay, "/tunnel/dial", token=TOKEN, addr=address
                                ),
                                origin=relay.url,
                            )
                            statuses.append("open")
                        except aiohttp.WSServerHandshakeError as exc:
                            statuses.append(exc.status)
                return statuses
        finally:
            await echo.close()

    assert asyncio.run(scenario()) == [403, 403, 403, 400]


def test_dial_disabled_by_default():
    async def scenario():
        async with running_relay() as relay:
            async with aiohttp.ClientSession() as session:
                with pytest.raises(aiohttp.WSServerHandshakeError) as caught:
                    await open_dial(session, relay, 22)
                return caught.value.status

    assert asyncio.run(scenario()) == 403


def test_dial_refused_target_is_502():
    async def scenario():
        # Bind and close a port, so that nothing listens on it.
        server = await asyncio.start_server(lambda r, w: None, LOCALHOST, 0)
        port = server.sockets[0].getsockname()[1]
        server.close()
        await server.wait_closed()
        async with running_relay(dial_allowlist=[f"{LOCALHOST}:{port}"]) as relay:
            async with aiohttp.ClientSession() as session:
                with pytest.raises(aiohttp.WSServerHandshakeError) as caught:
                    await open_dial(session, relay, port)
                return caught.value.status

    assert asyncio.run(scenario()) == 502


def test_oversized_message_closes_only_that_socket():
    async def scenario():
        echo = EchoServer()
        port = await echo.start()
        try:
            async with running_relay(
                dial_allowlist=[f"{LOCALHOST}:{port}"],
                max_message_size=MAX_MESSAGE_SIZE,
            ) as relay:
                async with aiohttp.ClientSession() as session:
                    victim = await open_dial(session, relay, port)
                    bystander = await open_dial(session, relay, port)
                    await victim.send_bytes(b"x" * (MAX_MESSAGE_SIZE + 1))
                    victim_end = await victim.receive()
                    await bystander.send_bytes(b"y" * MAX_MESSAGE_SIZE)
                    echoed = await receive_exactly(bystander, MAX_MESSAGE_SIZE)
                    await bystander.close()
                    return victim_end.type, victim.close_code, len(echoed)
        finally:
            await echo.close()

    victim_end_type, victim_close_code, echoed_length = asyncio.run(scenario())
    assert victim_end_type is aiohttp.WSMsgType.CLOSE
    assert victim_close_code == aiohttp.WSCloseCode.MESSAGE_TOO_BIG
    assert echoed_length == MAX_MESSAGE_SIZE


def test_tunnel_messages_bounded_by_max_message_size():
    async def scenario():
        echo = EchoServer()
        port = await echo.start()
        try:
            async with running_relay(
                dial_allowlist=[f"{LOCALHOST}:{port}"],
                max_message_size=MAX_MESSAGE_SIZE,
            ) as relay:
                async with aiohttp.ClientSession() as session:
                    ws = await open_dial(session, relay, port)
                    sizes = []
                    for _ in range(4):
                        await ws.send_bytes(b"z" * MAX_MESSAGE_SIZE)
                    total = 0
                    while total < 4 * MAX_MESSAGE_SIZE:
                        message = await ws.receive_bytes()
                        sizes.append(len(message))
                        total += len(message)
                    await ws.close()
                    return sizes
        finally:
            await echo.close()

    sizes = asyncio.run(scenario())
    assert max(sizes) <= MAX_MESSAGE_SIZE
    assert sum(sizes) == 4 * MAX_MESSAGE_SIZE


def test_text_message_on_tunnel_closes_it():
    async def scenario():
        echo = EchoServer()
        port = await echo.start()
        try:
            async with running_relay(dial_allowlist=[f"{LOCALHOST}:{port}"]) as relay:
                async with aiohttp.ClientSession() as session:
                    ws = await open_dial(session, relay, port)
                    await ws.send_str("text")
                    end = await ws.receive()
                    return end.type, ws.close_code
        finally:
            await echo.close()

    end_type, close_code = asyncio.run(scenario())
    assert end_type is aiohttp.WSMsgType.CLOSE
    assert close_code == aiohttp.WSCloseCode.UNSUPPORTED_DATA


def test_relay_stop_closes_everything(tmp_path):
    address_file = tmp_path / "repl" / f"{MACHINE_ID}.addr"
    stopped = threading.Event()

    def stock_client(port, connected):
        conn = rpyc.connect(LOCALHOST, port, config=STOCK_CONFIG)
        try:
            first = conn.root.add(1, 2)
            connected.set()
            stopped.wait(WAIT_SECONDS)
            with pytest.raises(EOFError):
                conn.root.add(1, 2)
            return first
        finally:
            conn.close()

    async def scenario():
        echo = EchoServer()
        echo_port = await echo.start()
        relay_context = running_relay(
            tmp_path, dial_allowlist=[f"{LOCALHOST}:{echo_port}"]
        )
        relay = await relay_context.__aenter__()
        tunnel = await serve_tunnel(
            relay.url, TOKEN, MACHINE_ID, BrowserService, min_backoff=0.05
        )
        session = aiohttp.ClientSession()
        try:
            tcp_port = int((await tunnel.wait_listening()).rsplit(":", 1)[1])
            connected = threading.Event()
            client = asyncio.create_task(
                asyncio.to_thread(stock_client, tcp_port, connected)
            )
            await asyncio.to_thread(connected.wait, WAIT_SECONDS)
            dial = await open_dial(session, relay, echo_port)
            file_before = address_file.exists()

            await relay.stop()
            file_after = address_file.exists()
            stopped.set()
            dial_end = await dial.receive()
            echo_end = await asyncio.wait_for(echo.clients_done.get(), WAIT_SECONDS)
            client_first = await client
            await wait_until(lambda: not tunnel.connections, "page connections end")
            with pytest.raises(ConnectionRefusedError):
                await asyncio.open_connection(LOCALHOST, tcp_port)
            return file_before, file_after, dial_end.type, echo_end, client_first
        finally:
            stopped.set()
            await tunnel.close()
            await session.close()
            await relay_context.__aexit__(None, None, None)
            await echo.close()

    file_before, file_after, dial_end_type, echo_end, client_first = asyncio.run(
        scenario()
    )
    assert file_before
    assert not file_after
    assert dial_end_type is aiohttp.WSMsgType.CLOSE
    assert echo_end == "peer closed"
    assert client_first == 3
