"""StateSource session callbacks: on_session_open and on_session_close."""

from __future__ import annotations

import asyncio
import logging

import pytest

import asyncmachine as am
from asyncmachine import rpc

SCHEMA = {
    "Start": am.State(add=["Ready"]),
    "Ready": am.State(require=["Start"]),
}


async def wait_for(condition, timeout: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.01)


def test_callbacks_see_open_and_close():
    async def scenario():
        opened: list[rpc.SourceSession] = []
        closed: list[rpc.SourceSession] = []
        source = rpc.StateSource(
            am.Machine(SCHEMA, id="foo"),
            on_session_open=opened.append,
            on_session_close=closed.append,
        )
        server = await rpc.serve_source(source, plain_service=None)
        try:
            mirror = await rpc.connect_mirror(server.addr, id="bar")
            assert [session.client_id for session in opened] == ["bar"]
            assert isinstance(opened[0].peer, rpc.Peer)
            assert closed == []

            await mirror.close()
            await wait_for(lambda: closed)
            assert closed == opened
        finally:
            await server.close()

    asyncio.run(scenario())


def test_close_callback_on_lost_connection():
    async def scenario():
        closed: list[str] = []
        source = rpc.StateSource(
            am.Machine(SCHEMA, id="foo"),
            on_session_close=lambda session: closed.append(session.client_id),
        )
        server = await rpc.serve_source(source, plain_service=None)
        try:
            mirror = await rpc.connect_mirror(server.addr, id="bar")
            # Drops the connection without a goodbye, as a crashed client would.
            mirror.peer.conn.abort("test: dropped")
            await wait_for(lambda: closed)
            assert closed == ["bar"]
            await mirror.close()
        finally:
            await server.close()

    asyncio.run(scenario())


def test_failing_callback_is_logged(caplog: pytest.LogCaptureFixture):
    def broken(session: rpc.SourceSession) -> None:
        raise RuntimeError(f"broken callback for {session.client_id}")

    async def scenario():
        source = rpc.StateSource(am.Machine(SCHEMA, id="foo"), on_session_open=broken)
        server = await rpc.serve_source(source, plain_service=None)
        try:
            mirror = await rpc.connect_mirror(server.addr, id="bar")
            assert await mirror.add("Start") == am.Result.EXECUTED
            assert mirror.is_active("Ready")
            await mirror.close()
        finally:
            await server.close()

    with caplog.at_level(logging.ERROR, logger="asyncmachine.rpc"):
        asyncio.run(scenario())
    failures = [r for r in caplog.records if "session callback" in r.getMessage()]
    assert len(failures) == 1
    assert "source foo" in failures[0].getMessage()
    assert "broken callback for bar" in failures[0].exc_text
