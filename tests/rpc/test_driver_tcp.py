"""AsyncConnection over real TCP sockets on 127.0.0.1."""

from __future__ import annotations

import asyncio
import logging
import os

import pytest

from asyncmachine.rpc import (
    CallTimeoutError,
    ConnectionClosedError,
    ConnectionOptions,
    FrameTooLargeError,
    connect_tcp,
    serve_tcp,
)
from tests.rpc.helpers import (
    LOCALHOST,
    Calculator,
    ClientService,
    TcpGate,
    start_silent_server,
    wait_until_closed,
)


def test_call_returns_result():
    async def scenario():
        server = await serve_tcp(Calculator, LOCALHOST, 0)
        try:
            conn = await connect_tcp(LOCALHOST, server.port)
            assert await conn.call("add", 1, 2) == 3
            assert await conn.call("exposed_add", "a", "b") == "ab"
            assert await conn.call("echo", (1, ("x", b"y"))) == (1, ("x", b"y"))
            await conn.aclose()
        finally:
            await server.close()

    asyncio.run(scenario())


def test_call_raises_remote_error():
    async def scenario():
        server = await serve_tcp(Calculator, LOCALHOST, 0)
        try:
            conn = await connect_tcp(LOCALHOST, server.port)
            with pytest.raises(ValueError, match="broken"):
                await conn.call("fail", "broken")
            # The connection stays usable after a remote error.
            assert await conn.call("add", 2, 2) == 4
            await conn.aclose()
        finally:
            await server.close()

    asyncio.run(scenario())


def test_server_calls_client_on_same_connection():
    async def scenario():
        server = await serve_tcp(Calculator, LOCALHOST, 0)
        try:
            conn = await connect_tcp(LOCALHOST, server.port, ClientService())
            (server_conn,) = server.connections
            assert await server_conn.call("whoami") == "client"
            assert await server_conn.call("double", 21) == 42
            assert await conn.call("add", 1, 1) == 2
            await conn.aclose()
        finally:
            await server.close()

    asyncio.run(scenario())


def test_server_handler_calls_back_from_task():
    async def scenario():
        service = Calculator()
        server = await serve_tcp(service, LOCALHOST, 0)
        try:
            conn = await connect_tcp(LOCALHOST, server.port, ClientService())
            assert await conn.call("call_client_later", 5) == "scheduled"
            assert await service.callback_results.get() == 10
            await conn.aclose()
        finally:
            await server.close()

    asyncio.run(scenario())


def test_concurrent_calls_keep_results_apart():
    async def scenario():
        server = await serve_tcp(Calculator, LOCALHOST, 0)
        try:
            conn = await connect_tcp(LOCALHOST, server.port, ClientService())
            (server_conn,) = server.connections
            client_calls = [conn.call("add", i, 1000) for i in range(100)]
            server_calls = [server_conn.call("double", i) for i in range(100)]
            results = await asyncio.gather(*client_calls, *server_calls)
            assert results[:100] == [i + 1000 for i in range(100)]
            assert results[100:] == [2 * i for i in range(100)]
            await conn.aclose()
        finally:
            await server.close()

    asyncio.run(scenario())


def test_notify_keeps_order_with_calls():
    async def scenario():
        received = []

        class Recorder(Calculator):
            def exposed_record(self, value):
                received.append(value)

            def exposed_recorded(self):
                return tuple(received)

        server = await serve_tcp(Recorder, LOCALHOST, 0)
        try:
            conn = await connect_tcp(LOCALHOST, server.port)
            for i in range(20):
                conn.notify("record", i)
            assert await conn.call("recorded") == tuple(range(20))
            await conn.aclose()
        finally:
            await server.close()

    asyncio.run(scenario())


def test_notify_before_root_is_queued():
    async def scenario():
        server = await serve_tcp(Calculator, LOCALHOST, 0)
        try:
            await connect_tcp(LOCALHOST, server.port, ClientService())
            (server_conn,) = server.connections
            # The server never fetched the client's root: notify must queue.
            server_conn.notify("double", 1)
            server_conn.notify("whoami")
            assert await server_conn.call("double", 2) == 4
        finally:
            await server.close()

    asyncio.run(scenario())


def test_drain_sends_queued_notifications_before_close():
    async def scenario():
        received: list[int] = []

        class Recorder(ClientService):
            def exposed_record(self, value: int) -> None:
                received.append(value)

        server = await serve_tcp(Calculator, LOCALHOST, 0)
        try:
            client = await connect_tcp(LOCALHOST, server.port, Recorder())
            (server_conn,) = server.connections
            # Queued, because the server has not fetched the client's root yet.
            server_conn.notify("record", 1)
            server_conn.notify("record", 2)
            assert await server_conn.drain_notifications(5.0) is True
            await server_conn.aclose()
            await wait_until_closed(client)
            assert received == [1, 2]
            # Nothing queued: returns at once.
            assert await server_conn.drain_notifications(5.0) is True
        finally:
            await server.close()

    asyncio.run(scenario())


def test_call_timeout_leaves_connection_usable():
    async def scenario():
        server = await serve_tcp(Calculator, LOCALHOST, 0)
        gate = TcpGate(server.port)
        gate_port = await gate.start()
        try:
            conn = await connect_tcp(LOCALHOST, gate_port)
            gate.hold()
            with pytest.raises(CallTimeoutError, match="'add'"):
                await conn.call("add", 1, 2, timeout=0.2)
            gate.release()
            # The late reply of the timed-out call is dropped.
            assert await conn.call("add", 3, 4, timeout=5) == 7
            await conn.aclose()
        finally:
            await gate.close()
            await server.close()

    asyncio.run(scenario())


def test_connect_timeout_on_silent_server():
    async def scenario():
        silent, port = await start_silent_server()
        try:
            with pytest.raises(TimeoutError):
                await connect_tcp(LOCALHOST, port, connect_timeout=0.2)
        finally:
            silent.close()
            await silent.wait_closed()

    asyncio.run(scenario())


def test_connect_refused_raises_oserror():
    async def scenario():
        server = await serve_tcp(Calculator, LOCALHOST, 0)
        port = server.port
        await server.close()
        with pytest.raises(OSError):
            await connect_tcp(LOCALHOST, port, connect_timeout=5)

    asyncio.run(scenario())


def test_pending_calls_fail_on_local_close():
    async def scenario():
        server = await serve_tcp(Calculator, LOCALHOST, 0)
        gate = TcpGate(server.port)
        gate_port = await gate.start()
        try:
            conn = await connect_tcp(LOCALHOST, gate_port)
            gate.hold()
            calls = [asyncio.ensure_future(conn.call("add", i, i)) for i in range(5)]
            await asyncio.sleep(0)
            await conn.aclose()
            results = await asyncio.gather(*calls, return_exceptions=True)
            for result in results:
                assert isinstance(result, ConnectionClosedError)
                assert isinstance(result, EOFError)
            assert "closed locally" in str(results[0])
            with pytest.raises(ConnectionClosedError):
                await conn.call("add", 1, 1)
        finally:
            await gate.close()
            await server.close()

    asyncio.run(scenario())


def test_pending_calls_fail_on_connection_loss():
    async def scenario():
        server = await serve_tcp(Calculator, LOCALHOST, 0)
        gate = TcpGate(server.port)
        gate_port = await gate.start()
        try:
            conn = await connect_tcp(LOCALHOST, gate_port)
            gate.hold()
            call = asyncio.ensure_future(conn.call("add", 1, 2, timeout=None))
            await asyncio.sleep(0)
            gate.cut()
            with pytest.raises(ConnectionClosedError, match="lost|closed"):
                await call
            await wait_until_closed(conn)
            assert conn.closed
        finally:
            await gate.close()
            await server.close()

    asyncio.run(scenario())


def test_pending_calls_fail_on_server_close():
    async def scenario():
        server = await serve_tcp(Calculator, LOCALHOST, 0)
        gate = TcpGate(server.port)
        gate_port = await gate.start()
        try:
            conn = await connect_tcp(LOCALHOST, gate_port, ClientService())
            (server_conn,) = server.connections
            gate.hold()
            # Neither request reaches its peer before the server closes.
            server_call = asyncio.ensure_future(server_conn.call("whoami"))
            client_call = asyncio.ensure_future(conn.call("add", 1, 2, timeout=None))
            await asyncio.sleep(0.05)
            await server.close()
            with pytest.raises(ConnectionClosedError):
                await server_call
            gate.release()
            with pytest.raises(ConnectionClosedError):
                await client_call
            await wait_until_closed(conn)
        finally:
            await gate.close()
            await server.close()

    asyncio.run(scenario())


def test_peer_close_request_closes_server_side():
    async def scenario():
        service = Calculator()
        server = await serve_tcp(service, LOCALHOST, 0)
        try:
            conn = await connect_tcp(LOCALHOST, server.port)
            (server_conn,) = server.connections
            await conn.aclose()
            await wait_until_closed(server_conn)
            assert server_conn.close_reason == "closed by the peer"
            assert service.disconnects == 1
            assert server.connections == frozenset()
        finally:
            await server.close()

    asyncio.run(scenario())


def test_oversized_frame_closes_only_that_connection(caplog):
    async def scenario():
        options = ConnectionOptions(max_frame_size=1024)
        server = await serve_tcp(Calculator, LOCALHOST, 0, options=options)
        try:
            good = await connect_tcp(LOCALHOST, server.port)
            bad = await connect_tcp(LOCALHOST, server.port)
            with pytest.raises(ConnectionClosedError):
                await bad.call("echo", os.urandom(4000), timeout=5)
            assert await good.call("add", 1, 2) == 3
            await good.aclose()
        finally:
            await server.close()

    caplog.set_level(logging.INFO, logger="asyncmachine.rpc")
    asyncio.run(scenario())
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1
    assert "exceeds the limit of 1024 bytes" in errors[0].getMessage()
    assert errors[0].conn_id.startswith("tcp-")


def test_oversized_outgoing_frame_raises_locally():
    async def scenario():
        server = await serve_tcp(Calculator, LOCALHOST, 0)
        try:
            options = ConnectionOptions(max_frame_size=1024)
            conn = await connect_tcp(LOCALHOST, server.port, options=options)
            with pytest.raises(FrameTooLargeError):
                await conn.call("echo", os.urandom(4000))
            assert await conn.call("add", 1, 2) == 3
            await conn.aclose()
        finally:
            await server.close()

    asyncio.run(scenario())


def test_oversized_reply_becomes_remote_error(caplog):
    async def scenario():
        options = ConnectionOptions(max_frame_size=1024)
        server = await serve_tcp(Calculator, LOCALHOST, 0, options=options)
        try:
            conn = await connect_tcp(LOCALHOST, server.port)
            with pytest.raises(Exception, match="exceeds the limit of 1024 bytes"):
                await conn.call("make_bytes", 4000)
            assert await conn.call("make_bytes", 10) == b"x" * 10
            await conn.aclose()
        finally:
            await server.close()

    caplog.set_level(logging.WARNING, logger="asyncmachine.rpc")
    asyncio.run(scenario())
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 1
    assert "reply to request" in warnings[0]


def test_compressed_frames_round_trip():
    async def scenario():
        server = await serve_tcp(Calculator, LOCALHOST, 0)
        try:
            conn = await connect_tcp(LOCALHOST, server.port)
            # Above rpyc's 3000-byte threshold, so both directions compress.
            text = "state " * 20_000
            assert await conn.call("echo", text) == text
            await conn.aclose()
        finally:
            await server.close()

    asyncio.run(scenario())


MALFORMED_STREAMS = {
    "invalid compression flag": b"\x00\x00\x00\x02\x07ab\n",
    "missing trailer": b"\x00\x00\x00\x02\x00abX",
    "announced size over limit": b"\xff\xff\xff\xff\x00",
    "empty frame": b"\x00\x00\x00\x00\x00\n",
    "invalid message type": b"\x00\x00\x00\x03\x00\x09ab\n",
    "invalid brine payload": b"\x00\x00\x00\x03\x00\x02\xff\xff\n",
    "invalid compressed body": b"\x00\x00\x00\x03\x01abc\n",
}


@pytest.mark.parametrize("stream", MALFORMED_STREAMS.values(), ids=MALFORMED_STREAMS)
def test_malformed_stream_closes_only_that_connection(stream, caplog):
    async def scenario():
        server = await serve_tcp(Calculator, LOCALHOST, 0)
        try:
            good = await connect_tcp(LOCALHOST, server.port)
            reader, writer = await asyncio.open_connection(LOCALHOST, server.port)
            writer.write(stream)
            await writer.drain()
            # The server closes the bad connection: the raw socket reads EOF.
            assert await reader.read() == b""
            writer.close()
            assert await good.call("add", 1, 2) == 3
            assert len(server.connections) == 1
            await good.aclose()
        finally:
            await server.close()

    caplog.set_level(logging.ERROR, logger="asyncmachine.rpc")
    asyncio.run(scenario())
    assert len(caplog.records) == 1
    assert caplog.records[0].getMessage().startswith("connection tcp-")


def test_stream_split_into_single_bytes():
    async def scenario():
        server = await serve_tcp(Calculator, LOCALHOST, 0)
        gate = TcpGate(server.port)
        gate_port = await gate.start()
        try:
            conn = await connect_tcp(LOCALHOST, gate_port)
            frames = []
            conn_transport = conn._transport
            original_write = conn_transport.write

            async def write_bytewise(data):
                frames.append(data)
                for i in range(len(data)):
                    await original_write(data[i : i + 1])

            conn_transport.write = write_bytewise
            assert await conn.call("add", 20, 22) == 42
            assert frames
            await conn.aclose()
        finally:
            await gate.close()
            await server.close()

    asyncio.run(scenario())
