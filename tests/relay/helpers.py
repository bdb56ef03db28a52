"""Relays, services and TCP peers shared by the relay tests (all on 127.0.0.1)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import rpyc
from yarl import URL

from asyncmachine.relay import Relay

LOCALHOST = "127.0.0.1"
TOKEN = "test-token-3f9a"
MACHINE_ID = "browser-bar-x7k"
# Keeps a failing stock client from waiting rpyc's default 30 s per request.
STOCK_CONFIG = {"sync_request_timeout": 10}
# Bounds waits that should end at once; a hang fails instead of blocking.
WAIT_SECONDS = 10.0


class BrowserService(rpyc.Service):
    """What the page exposes through a listen tunnel."""

    def exposed_add(self, a: Any, b: Any) -> Any:
        return a + b

    def exposed_whoami(self) -> str:
        return MACHINE_ID


@contextlib.asynccontextmanager
async def running_relay(
    tmp_path: Path | None = None, **kwargs: Any
) -> AsyncIterator[Relay]:
    """Start a relay on a free port with the test token and stop it afterwards."""
    kwargs.setdefault("port", 0)
    kwargs.setdefault("token", TOKEN)
    if tmp_path is not None:
        kwargs.setdefault("repl_dir", tmp_path / "repl")
    relay = Relay(**kwargs)
    await relay.start()
    try:
        yield relay
    finally:
        await relay.stop()


def ws_url(relay: Relay, path: str, **query: str) -> str:
    """Return a WebSocket URL of the relay with the query parameters given."""
    return str(URL(relay.ws_url + path).with_query(query))


class EchoServer:
    """A TCP server that sends every byte back and records finished clients."""

    def __init__(self) -> None:
        self._server: asyncio.Server | None = None
        self.clients_done = asyncio.Queue[str]()

    async def start(self) -> int:
        self._server = await asyncio.start_server(self._echo, LOCALHOST, 0)
        return self._server.sockets[0].getsockname()[1]

    async def _echo(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        reason = "peer closed"
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError) as exc:
            reason = repr(exc)
        writer.close()
        await self.clients_done.put(reason)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()


async def wait_until(predicate: Any, description: str) -> None:
    """Poll a condition that another task makes true, within WAIT_SECONDS."""
    try:
        async with asyncio.timeout(WAIT_SECONDS):
            while not predicate():
                await asyncio.sleep(0.01)
    except TimeoutError:
        raise AssertionError(f"timed out waiting until {description}") from None


def stock_call(port: int, method: str, *args: Any) -> Any:
    """Connect a stock synchronous rpyc client, call one method, disconnect."""
    conn = rpyc.connect(LOCALHOST, port, config=STOCK_CONFIG)
    try:
        return getattr(conn.root, method)(*args)
    finally:
        conn.close()
