"""Listen tunnels: a stock rpyc client on the relay's host reaches the page's service.

The "page" is a CPython serve_tunnel client, which uses aiohttp WebSockets the
way the Pyodide build uses the browser's.
"""

from __future__ import annotations

import asyncio
import json
import logging
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
    running_relay,
    stock_call,
    wait_until,
    ws_url,
)


def test_listen_tunnel_serves_stock_rpyc_client(tmp_path):
    async def scenario():
        async with running_relay(tmp_path) as relay:
            tunnel = await serve_tunnel(relay.url, TOKEN, MACHINE_ID, BrowserService)
            try:
                address = await tunnel.wait_listening()
                address_file = tmp_path / "repl" / f"{MACHINE_ID}.addr"
                file_text = address_file.read_text()
                port = int(address.rsplit(":", 1)[1])
                results = (
                    await asyncio.to_thread(stock_call, port, "add", 2, 3),
                    await asyncio.to_thread(stock_call, port, "whoami"),
                )
                return address, file_text, relay.listen_addresses, results
            finally:
                await tunnel.close()

    address, file_text, listen_addresses, results = asyncio.run(scenario())
    host, port = address.rsplit(":", 1)
    assert host == LOCALHOST
    assert int(port) > 0
    assert file_text.strip() == address
    assert listen_addresses == {MACHINE_ID: address}
    assert results == (5, MACHINE_ID)


def test_listen_tunnel_three_clients_at_once(tmp_path):
    clients = 3
    connected = threading.Barrier(clients + 1)
    finish = threading.Barrier(clients + 1)

    def client(port, number):
        conn = rpyc.connect(LOCALHOST, port, config=STOCK_CONFIG)
        try:
            first = conn.root.add(number, 100)
            connected.wait(WAIT_SECONDS)
            finish.wait(WAIT_SECONDS)
            return first, conn.root.add(number, 200)
        finally:
            conn.close()

    async def scenario():
        async with running_relay(tmp_path) as relay:
            tunnel = await serve_tunnel(relay.url, TOKEN, MACHINE_ID, BrowserService)
            try:
                port = int((await tunnel.wait_listening()).rsplit(":", 1)[1])
                calls = asyncio.gather(
                    *(asyncio.to_thread(client, port, n) for n in range(clients))
                )
                await asyncio.to_thread(connected.wait, WAIT_SECONDS)
                # The page registers a connection right after its first reply.
                await wait_until(
                    lambda: len(tunnel.connections) >= clients,
                    "the page serves every client",
                )
                open_connections = len(tunnel.connections)
                await asyncio.to_thread(finish.wait, WAIT_SECONDS)
                results = await calls
                await wait_until(
                    lambda: not tunnel.connections, "the tunnel connections closed"
                )
                return open_connections, results
            finally:
                await tunnel.close()

    open_connections, results = asyncio.run(scenario())
    assert open_connections == clients
    assert results == [(n + 100, n + 200) for n in range(clients)]


def test_listen_tunnel_file_removed_when_page_closes(tmp_path):
    address_file = tmp_path / "repl" / f"{MACHINE_ID}.addr"

    async def scenario():
        async with running_relay(tmp_path) as relay:
            tunnel = await serve_tunnel(relay.url, TOKEN, MACHINE_ID, BrowserService)
            port = int((await tunnel.wait_listening()).rsplit(":", 1)[1])
            existed = address_file.exists()
            await tunnel.close()
            await wait_until(lambda: not address_file.exists(), "the file is removed")
            with pytest.raises(ConnectionRefusedError):
                await asyncio.open_connection(LOCALHOST, port)
            return existed, relay.listen_addresses

    existed, listen_addresses = asyncio.run(scenario())
    assert existed
    assert listen_addresses == {}


def test_listen_tunnel_page_close_drops_tcp_clients(tmp_path):
    connected = threading.Event()
    page_closed = threading.Event()

    def connect_and_wait_for_eof(port):
        conn = rpyc.connect(LOCALHOST, port, config=STOCK_CONFIG)
        try:
            first = conn.root.add(1, 1)
            connected.set()
            page_closed.wait(WAIT_SECONDS)
            with pytest.raises(EOFError):
                conn.root.add(1, 2)
            return first
        finally:
            conn.close()

    async def scenario():
        async with running_relay(tmp_path) as relay:
            tunnel = await serve_tunnel(relay.url, TOKEN, MACHINE_ID, BrowserService)
            try:
                port = int((await tunnel.wait_listening()).rsplit(":", 1)[1])
                client = asyncio.create_task(
                    asyncio.to_thread(connect_and_wait_for_eof, port)
                )
                await asyncio.to_thread(connected.wait, WAIT_SECONDS)
                await tunnel.close()
            finally:
                page_closed.set()
            return await client

    assert asyncio.run(scenario()) == 2


def test_listen_tunnel_tcp_close_ends_page_connection(tmp_path):
    async def scenario():
        async with running_relay(tmp_path) as relay:
            tunnel = await serve_tunnel(relay.url, TOKEN, MACHINE_ID, BrowserService)
            try:
                port = int((await tunnel.wait_listening()).rsplit(":", 1)[1])
                assert await asyncio.to_thread(stock_call, port, "add", 1, 1) == 2
                await wait_until(
                    lambda: not tunnel.connections, "the page's connection closed"
                )
                return tunnel.listening
            finally:
                await tunnel.close()

    # The tunnel itself stays up for the next client.
    assert asyncio.run(scenario()) is True


def test_listen_tunnel_reconnects_after_control_drop(tmp_path):
    address_file = tmp_path / "repl" / f"{MACHINE_ID}.addr"

    async def scenario():
        async with running_relay(tmp_path) as relay:
            tunnel = await serve_tunnel(
                relay.url, TOKEN, MACHINE_ID, BrowserService, min_backoff=0.05
            )
            try:
                first = await tunnel.wait_listening()
                # The relay drops the control socket, as on a network failure.
                await relay._tunnels.listen_tunnels[MACHINE_ID].close("test drop")
                await wait_until(
                    lambda: tunnel.address not in (None, first),
                    "the tunnel listens again",
                )
                second = tunnel.address
                port = int(second.rsplit(":", 1)[1])
                result = await asyncio.to_thread(stock_call, port, "add", 3, 4)
                return first, second, address_file.read_text().strip(), result
            finally:
                await tunnel.close()

    first, second, file_text, result = asyncio.run(scenario())
    assert first != second
    assert file_text == second
    assert result == 7


def test_listen_tunnel_same_id_replaces_previous(tmp_path):
    address_file = tmp_path / "repl" / f"{MACHINE_ID}.addr"

    async def scenario():
        async with running_relay(tmp_path) as relay:
            origin = relay.url
            async with aiohttp.ClientSession() as session:
                url = ws_url(
                    relay,
                    "/tunnel/listen",
                    token=TOKEN,
                    id=MACHINE_ID,
                    addr="127.0.0.1:0",
                )
                first = await session.ws_connect(url, origin=origin)
                first_address = json.loads(await first.receive_str())["listening"]
                second = await session.ws_connect(url, origin=origin)
                second_address = json.loads(await second.receive_str())["listening"]
                first_end = await first.receive()
                file_text = address_file.read_text().strip()
                await second.close()
                await wait_until(lambda: not address_file.exists(), "file removed")
                return first_address, second_address, first_end.type, file_text

    first_address, second_address, first_end_type, file_text = asyncio.run(scenario())
    assert first_address != second_address
    assert first_end_type is aiohttp.WSMsgType.CLOSE
    assert file_text == second_address


def test_listen_tunnel_control_messages(tmp_path):
    """The wire format: {"listening": addr} first, then {"open": id} per client."""

    async def scenario():
        async with running_relay(tmp_path) as relay:
            async with aiohttp.ClientSession() as session:
                url = ws_url(
                    relay,
                    "/tunnel/listen",
                    token=TOKEN,
                    id=MACHINE_ID,
                    addr="127.0.0.1:0",
                )
                control = await session.ws_connect(url, origin=relay.url)
                listening = json.loads(await control.receive_str())
                port = int(listening["listening"].rsplit(":", 1)[1])
                reader, writer = await asyncio.open_connection(LOCALHOST, port)
                writer.write(b"early bytes")
                opened = json.loads(await control.receive_str())
                data = await session.ws_connect(
                    ws_url(relay, "/tunnel/data", token=TOKEN, conn=opened["open"]),
                    origin=relay.url,
                )
                early = b""
                while len(early) < len(b"early bytes"):
                    early += await data.receive_bytes()
                await data.send_bytes(b"reply")
                reply = await reader.readexactly(5)
                try:
                    await session.ws_connect(
                        ws_url(relay, "/tunnel/data", token=TOKEN, conn=opened["open"]),
                        origin=relay.url,
                    )
                    reuse_status = "open"
                except aiohttp.WSServerHandshakeError as exc:
                    reuse_status = exc.status
                writer.close()
                data_end = await data.receive()
                return listening, opened, early, reply, data_end.type, reuse_status

    listening, opened, early, reply, data_end_type, reuse_status = asyncio.run(
        scenario()
    )
    assert set(listening) == {"listening"}
    assert set(opened) == {"open"}
    assert isinstance(opened["open"], str)
    # Bytes the TCP client sent before the data socket opened are kept.
    assert early == b"early bytes"
    assert reply == b"reply"
    assert data_end_type is aiohttp.WSMsgType.CLOSE
    assert reuse_status == 404


def test_listen_tunnel_rejections(tmp_path):
    cases = [
        ({"id": MACHINE_ID, "addr": "127.0.0.1:5555"}, 403),
        ({"id": MACHINE_ID, "addr": "0.0.0.0:0"}, 403),
        ({"id": "../escape", "addr": "127.0.0.1:0"}, 400),
        ({"id": "", "addr": "127.0.0.1:0"}, 400),
        ({"id": MACHINE_ID, "addr": "nonsense"}, 400),
        ({"id": MACHINE_ID}, 400),
    ]

    async def scenario():
        async with running_relay(tmp_path) as relay:
            statuses = []
            async with aiohttp.ClientSession() as session:
                for query, _status in cases:
                    url = ws_url(relay, "/tunnel/listen", token=TOKEN, **query)
                    try:
                        ws = await session.ws_connect(url, origin=relay.url)
                    except aiohttp.WSServerHandshakeError as exc:
                        statuses.append(exc.status)
                    else:
                        await ws.close()
                        statuses.append("open")
            return statuses

    assert asyncio.run(scenario()) == [status for _query, status in cases]
    assert not (tmp_path / "repl").exists() or not list((tmp_path / "repl").iterdir())


def test_data_socket_unknown_connection_is_404(tmp_path):
    async def scenario():
        async with running_relay(tmp_path) as relay:
            async with aiohttp.ClientSession() as session:
                with pytest.raises(aiohttp.WSServerHandshakeError) as caught:
                    await session.ws_connect(
                        ws_url(relay, "/tunnel/data", token=TOKEN, conn="guess"),
                        origin=relay.url,
                    )
                return caught.value.status

    assert asyncio.run(scenario()) == 404


def test_listen_tunnel_token_never_logged(tmp_path, caplog):
    caplog.set_level(logging.DEBUG)

    async def scenario():
        async with running_relay(tmp_path) as relay:
            tunnel = await serve_tunnel(relay.url, TOKEN, MACHINE_ID, BrowserService)
            try:
                port = int((await tunnel.wait_listening()).rsplit(":", 1)[1])
                result = await asyncio.to_thread(stock_call, port, "add", 1, 2)
            finally:
                await tunnel.close()
        # A relay with another token rejects the tunnel, and the client logs it.
        async with running_relay(tmp_path, token="other-token") as relay:
            tunnel = await serve_tunnel(relay.url, TOKEN, MACHINE_ID, BrowserService)
            try:
                await wait_until(
                    lambda: "opening the control socket failed" in caplog.text,
                    "the client logs the rejection",
                )
            finally:
                await tunnel.close()
        return result

    assert asyncio.run(scenario()) == 3
    assert "403" in caplog.text
    assert TOKEN not in caplog.text
