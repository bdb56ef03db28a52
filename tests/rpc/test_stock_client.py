"""A stock synchronous rpyc client, in a thread, against our asyncio TCP server."""

from __future__ import annotations

import asyncio
import pickle

import pytest
import rpyc
from rpyc.core import consts

from asyncmachine.rpc import serve_tcp
from tests.rpc.helpers import LOCALHOST, Calculator

# Keeps a failing test from waiting rpyc's default 30 s per request.
STOCK_CONFIG = {"sync_request_timeout": 10}


def run_with_stock_client(client_steps):
    """Serve Calculator on the loop and run client_steps(conn) in a thread."""

    async def scenario():
        server = await serve_tcp(Calculator, LOCALHOST, 0)
        try:
            return await asyncio.to_thread(connect_and_run, server.port, client_steps)
        finally:
            await server.close()

    return asyncio.run(scenario())


def connect_and_run(port, client_steps):
    conn = rpyc.connect(LOCALHOST, port, config=STOCK_CONFIG)
    try:
        return client_steps(conn)
    finally:
        conn.close()


def test_stock_client_calls_exposed_methods():
    def steps(conn):
        return (
            conn.root.add(1, 2),
            conn.root.exposed_add("a", "b"),
            conn.root.echo((1, "x")),
        )

    assert run_with_stock_client(steps) == (3, "ab", (1, "x"))


def test_stock_client_gets_remote_errors():
    def steps(conn):
        with pytest.raises(ValueError, match="broken"):
            conn.root.fail("broken")
        return conn.root.add(2, 3)

    assert run_with_stock_client(steps) == 5


HIDDEN_NAMES = (
    "secret",
    "_private",
    "on_connect",
    "__init__",
    "__new__",
    "__class__",
    "__dict__",
    "__reduce_ex__",
)


def test_stock_client_cannot_reach_hidden_attributes():
    def steps(conn):
        for name in HIDDEN_NAMES[:3]:
            with pytest.raises(AttributeError):
                getattr(conn.root, name)
        # A netref resolves dunder names locally, so send the requests directly.
        for name in HIDDEN_NAMES:
            with pytest.raises(AttributeError):
                conn.sync_request(consts.HANDLE_GETATTR, conn.root, name)
            with pytest.raises(AttributeError):
                conn.sync_request(consts.HANDLE_CALLATTR, conn.root, name, (), ())
        return "checked"

    assert run_with_stock_client(steps) == "checked"


def test_stock_client_cannot_set_attributes():
    def steps(conn):
        with pytest.raises(AttributeError):
            conn.root.exposed_add = None
        return conn.root.add(1, 1)

    assert run_with_stock_client(steps) == 2


def test_stock_client_cannot_pickle_objects():
    def steps(conn):
        with pytest.raises(ValueError, match="pickling is disabled"):
            pickle.dumps(conn.root)
        return "checked"

    assert run_with_stock_client(steps) == "checked"


def test_several_stock_clients_in_sequence():
    def steps(conn):
        return conn.root.add(10, 5)

    async def scenario():
        server = await serve_tcp(Calculator, LOCALHOST, 0)
        try:
            results = []
            for _ in range(3):
                results.append(
                    await asyncio.to_thread(connect_and_run, server.port, steps)
                )
            return results
        finally:
            await server.close()

    assert asyncio.run(scenario()) == [15, 15, 15]
