"""Safe defaults: exposed methods only, no pickle, no custom exceptions, no blocking."""

from __future__ import annotations

import asyncio

import pytest
import rpyc
from rpyc.core import consts
from rpyc.core.vinegar import GenericException

from asyncmachine.rpc import (
    SAFE_RPYC_CONFIG,
    ConnectionOptions,
    SyncRequestError,
    connect_tcp,
    serve_tcp,
)
from tests.rpc.helpers import LOCALHOST, Calculator, CustomError


def run_with_connection(steps):
    """Serve Calculator and run steps(client_conn, server) on one loop."""

    async def scenario():
        server = await serve_tcp(Calculator, LOCALHOST, 0)
        try:
            conn = await connect_tcp(LOCALHOST, server.port)
            try:
                return await steps(conn, server)
            finally:
                await conn.aclose()
        finally:
            await server.close()

    return asyncio.run(scenario())


def test_safe_config_defaults():
    assert SAFE_RPYC_CONFIG["allow_pickle"] is False
    assert SAFE_RPYC_CONFIG["allow_public_attrs"] is False
    assert SAFE_RPYC_CONFIG["allow_all_attrs"] is False
    assert SAFE_RPYC_CONFIG["allow_safe_attrs"] is False
    assert SAFE_RPYC_CONFIG["allow_setattr"] is False
    assert SAFE_RPYC_CONFIG["allow_delattr"] is False
    assert SAFE_RPYC_CONFIG["import_custom_exceptions"] is False
    assert SAFE_RPYC_CONFIG["instantiate_custom_exceptions"] is False


def test_connections_apply_safe_config():
    async def steps(conn, server):
        (server_conn,) = server.connections
        return [dict(c._config) for c in (conn, server_conn)]

    for config in run_with_connection(steps):
        for key, value in SAFE_RPYC_CONFIG.items():
            assert config[key] == value, key


def test_call_of_hidden_names_fails():
    async def steps(conn, server):
        for name in ("secret", "_private", "on_connect", "__init__", "__class__"):
            with pytest.raises(AttributeError):
                await conn.call(name)
        return await conn.call("add", 1, 1)

    assert run_with_connection(steps) == 2


def test_custom_exception_not_rebuilt():
    async def steps(conn, server):
        with pytest.raises(GenericException, match="custom failure") as caught:
            await conn.call("fail_custom", "custom failure")
        assert not isinstance(caught.value, CustomError)
        return True

    assert run_with_connection(steps)


def test_by_reference_arguments_rejected():
    async def steps(conn, server):
        for value in ([1, 2], {"a": 1}, {1, 2}, object()):
            with pytest.raises(TypeError, match="by reference"):
                await conn.call("echo", value)
            with pytest.raises(TypeError, match="by reference"):
                conn.notify("echo", value)
        return await conn.call("echo", (1, frozenset({2})))

    assert run_with_connection(steps) == (1, frozenset({2}))


def test_blocking_requests_raise_sync_request_error():
    async def steps(conn, server):
        (server_conn,) = server.connections
        # The server never fetched the client's root.
        with pytest.raises(SyncRequestError, match="get_root"):
            _ = server_conn.root
        root = await conn.get_root()
        with pytest.raises(SyncRequestError, match="blocking"):
            _ = root.add
        with pytest.raises(SyncRequestError):
            conn.root.add(1, 2)
        with pytest.raises(SyncRequestError):
            conn.sync_request(consts.HANDLE_PING, b"x")
        with pytest.raises(SyncRequestError):
            _ = conn.async_request(consts.HANDLE_PING, b"x").value
        with pytest.raises(SyncRequestError):
            conn.serve(0)
        with pytest.raises(SyncRequestError):
            conn.poll_all()
        await conn.ping()
        return await conn.call("add", 1, 2)

    assert run_with_connection(steps) == 3


def test_server_rejects_netref_arguments_without_blocking():
    def client_steps(port):
        conn = rpyc.connect(LOCALHOST, port, config={"sync_request_timeout": 10})
        try:
            # Lists travel as references; using them on the server would need a
            # blocking request back to this client.
            with pytest.raises(Exception, match="cannot be served"):
                conn.root.add([1], [2])
            return conn.root.add(1, 2)
        finally:
            conn.close()

    async def scenario():
        server = await serve_tcp(Calculator, LOCALHOST, 0)
        try:
            return await asyncio.to_thread(client_steps, server.port)
        finally:
            await server.close()

    assert asyncio.run(scenario()) == 3


def test_bind_threads_option_rejected():
    with pytest.raises(ValueError, match="bind_threads"):
        ConnectionOptions(rpyc_config={"bind_threads": True})


def test_invalid_options_rejected():
    with pytest.raises(ValueError, match="max_frame_size"):
        ConnectionOptions(max_frame_size=0)
    with pytest.raises(ValueError, match="call_timeout"):
        ConnectionOptions(call_timeout=0)
    with pytest.raises(ValueError, match="close_timeout"):
        ConnectionOptions(close_timeout=-1)
