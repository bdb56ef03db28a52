"""Source access control: tokens, client ids, exposed names and stock rpyc clients."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest
import rpyc
from rpyc.core import consts

import asyncmachine as am
from asyncmachine import rpc
from tests.rpc.helpers import LOCALHOST

SCHEMA = {
    "Start": am.State(add=["Ready"]),
    "Ready": am.State(require=["Start"]),
}
TOKEN = "s3cret-token"
# Keeps a failing test from waiting rpyc's default 30 s per request.
STOCK_CONFIG = {"sync_request_timeout": 10}


def test_token_is_required_when_set():
    async def scenario():
        source = am.Machine(SCHEMA, id="foo")
        server = await rpc.serve_source(source, token=TOKEN, plain_service=None)
        try:
            with pytest.raises(rpc.AccessDeniedError, match="missing token"):
                await rpc.connect_mirror(server.addr, id="bar")
            with pytest.raises(rpc.AccessDeniedError, match="invalid token"):
                await rpc.connect_mirror(server.addr, id="bar", token="guess")
            mirror = await rpc.connect_mirror(server.addr, id="bar", token=TOKEN)
            assert await mirror.add("Start") == am.Result.EXECUTED
            await mirror.close()
            assert len(server.sessions) == 0
        finally:
            await server.close()

    asyncio.run(scenario())


def test_forbidden_client_id_is_rejected():
    async def scenario():
        source = am.Machine(SCHEMA, id="foo")
        server = await rpc.serve_source(source, allowed_ids={"bar"}, plain_service=None)
        try:
            with pytest.raises(rpc.AccessDeniedError, match="'baz' is not allowed"):
                await rpc.connect_mirror(server.addr, id="baz")
            mirror = await rpc.connect_mirror(server.addr, id="bar")
            await mirror.close()
        finally:
            await server.close()

    asyncio.run(scenario())


def test_rejected_mirror_leaves_no_session_and_no_retry():
    async def scenario():
        source = am.Machine(SCHEMA, id="foo")
        server = await rpc.serve_source(source, token=TOKEN, plain_service=None)
        try:
            with pytest.raises(rpc.AccessDeniedError):
                await rpc.connect_mirror(
                    server.addr, id="bar", retry=rpc.RetryPolicy(attempts=5)
                )
            assert server.sessions == ()
        finally:
            await server.close()

    asyncio.run(scenario())


@pytest.mark.parametrize("addr", ["0.0.0.0:0", "192.0.2.1:0", "[::]:0"])
def test_token_required_off_loopback(addr):
    async def scenario():
        source = am.Machine(SCHEMA, id="foo")
        with pytest.raises(ValueError, match="needs a token"):
            await rpc.serve_source(source, addr)

    asyncio.run(scenario())


def test_unknown_source_id_is_rejected():
    async def scenario():
        source = am.Machine(SCHEMA, id="foo")
        server = await rpc.serve_source(source, plain_service=None)
        try:
            with pytest.raises(rpc.HandshakeError) as raised:
                await rpc.connect_mirror(server.addr, id="bar", source_id="nope")
            assert raised.value.code == "not_found"
        finally:
            await server.close()

    asyncio.run(scenario())


# -- stock rpyc clients ----------------------------------------------------------------


class PlainMethods:
    """A stand-in plain face: a few by-value methods for stock clients."""

    def __init__(self, mach: am.Machine) -> None:
        self._mach = mach

    def exposed_active(self) -> tuple[str, ...]:
        return tuple(self._mach.active_states())

    def exposed_add(self, *states: str) -> int:
        return int(self._mach.add(list(states)))


def with_stock_client(
    steps: Callable[[Any], Any], **serve_kwargs: Any
) -> tuple[Any, am.Machine]:
    """Serve a source and run ``steps(conn)`` with a stock client in a thread."""

    async def scenario():
        source = am.Machine(SCHEMA, id="foo")
        server = await rpc.serve_source(source, **serve_kwargs)

        def connect_and_run() -> Any:
            conn = rpyc.connect(LOCALHOST, server.port, config=STOCK_CONFIG)
            try:
                return steps(conn)
            finally:
                conn.close()

        try:
            return await asyncio.to_thread(connect_and_run), source
        finally:
            await server.close()

    return asyncio.run(scenario())


def test_stock_client_cannot_reach_other_attributes():
    hidden = (
        "secret",
        "_plain",
        "peer",
        "conn",
        "_source_sessions",
        "__class__",
        "__dict__",
        "__init__",
        "on_connect",
        "_rpyc_getattr",
        "exposed_",
    )

    def steps(conn: Any) -> list[str]:
        refused = []
        for name in hidden:
            with pytest.raises(AttributeError):
                conn.sync_request(consts.HANDLE_GETATTR, conn.root, name)
            refused.append(name)
        return refused

    refused, _source = with_stock_client(steps, plain_service=None)
    assert refused == list(hidden)


def test_stock_client_calls_plain_methods():
    def steps(conn: Any) -> tuple[Any, Any]:
        return conn.root.add("Start"), conn.root.active()

    (result, active), source = with_stock_client(
        steps, plain_service=lambda peer: PlainMethods(peer._sources["foo"].machine)
    )
    assert result == 0
    assert active == ("Start", "Ready")
    assert source.is_active("Start")


def test_stock_client_needs_auth_with_token():
    def steps(conn: Any) -> Any:
        with pytest.raises(PermissionError):
            conn.root.add("Start")
        with pytest.raises(PermissionError):
            conn.root.auth("guess")
        assert conn.root.auth(TOKEN) is True
        return conn.root.add("Start")

    result, source = with_stock_client(
        steps,
        token=TOKEN,
        plain_service=lambda peer: PlainMethods(peer._sources["foo"].machine),
    )
    assert result == 0
    assert source.is_active("Ready")


def test_stock_client_uses_repl_methods_by_default():
    def steps(conn: Any) -> tuple[Any, Any]:
        return conn.root.add("Start"), conn.root.active()

    (result, active), _source = with_stock_client(steps)
    assert result == 0
    assert tuple(active) == ("Start", "Ready")


def test_stock_client_garbage_closes_only_its_connection():
    async def scenario():
        source = am.Machine(SCHEMA, id="foo")
        server = await rpc.serve_source(source, plain_service=None)
        mirror = await rpc.connect_mirror(server.addr, id="good")

        def hostile() -> None:
            conn = rpyc.connect(LOCALHOST, server.port, config=STOCK_CONFIG)
            try:
                with pytest.raises(EOFError):
                    conn.root.source("k", b"[1,5,not json")
            finally:
                conn.close()

        try:
            await asyncio.to_thread(hostile)
            assert await mirror.add("Start") == am.Result.EXECUTED
            assert mirror.is_active("Ready")
        finally:
            await mirror.close()
            await server.close()

    asyncio.run(scenario())


def test_stock_client_auth_unlocks_repl_methods():
    def steps(conn: Any) -> Any:
        with pytest.raises(PermissionError):
            conn.root.add("Start")
        assert conn.root.auth(TOKEN) is True
        return conn.root.add("Start")

    result, source = with_stock_client(steps, token=TOKEN)
    assert result == 0
    assert source.is_active("Ready")
