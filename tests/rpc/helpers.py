"""Services and socket tools shared by the rpc tests (all on 127.0.0.1)."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import rpyc

LOCALHOST = "127.0.0.1"


class CustomError(Exception):
    """An exception class the peer must not rebuild (custom exceptions are off)."""


class Calculator(rpyc.Service):
    """Server-side service: a few exposed methods and some that must stay hidden."""

    def __init__(self) -> None:
        self.conn: Any = None
        self.callback_results: asyncio.Queue[Any] = asyncio.Queue()
        self.disconnects = 0

    def on_connect(self, conn: Any) -> None:
        self.conn = conn

    def on_disconnect(self, conn: Any) -> None:
        self.disconnects += 1

    def exposed_add(self, a: Any, b: Any) -> Any:
        return a + b

    def exposed_echo(self, value: Any) -> Any:
        return value

    def exposed_make_bytes(self, size: int) -> bytes:
        return b"x" * size

    def exposed_fail(self, message: str) -> None:
        raise ValueError(message)

    def exposed_fail_custom(self, message: str) -> None:
        raise CustomError(message)

    def exposed_call_client_later(self, value: int) -> str:
        """Ask the client to double a value from a task, after this reply."""
        loop = asyncio.get_running_loop()
        loop.create_task(self._call_client(value))
        return "scheduled"

    async def _call_client(self, value: int) -> None:
        try:
            result = await self.conn.call("double", value, timeout=5)
        except Exception as exc:
            result = exc
        await self.callback_results.put(result)

    def secret(self) -> str:
        return "not exposed"

    def _private(self) -> str:
        return "not exposed"


class ClientService(rpyc.Service):
    """Client-side service the server calls back."""

    def exposed_double(self, value: int) -> int:
        return 2 * value

    def exposed_whoami(self) -> str:
        return "client"


class TcpGate:
    """A byte relay in front of a server that can hold traffic or cut connections.

    :meth:`hold` keeps bytes in both directions from passing until
    :meth:`release`.
    """

    def __init__(self, target_port: int) -> None:
        self._target_port = target_port
        self._server: asyncio.Server | None = None
        self._open = asyncio.Event()
        self._open.set()
        self._writers: list[asyncio.StreamWriter] = []
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> int:
        self._server = await asyncio.start_server(self._relay, LOCALHOST, 0)
        return self._server.sockets[0].getsockname()[1]

    def hold(self) -> None:
        self._open.clear()

    def release(self) -> None:
        self._open.set()

    def cut(self) -> None:
        """Abort every relayed socket, as if the network dropped."""
        for writer in self._writers:
            writer.transport.abort()

    async def close(self) -> None:
        self.cut()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _relay(
        self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter
    ) -> None:
        server_reader, server_writer = await asyncio.open_connection(
            LOCALHOST, self._target_port
        )
        self._writers += [client_writer, server_writer]
        pumps = [
            asyncio.create_task(self._pump(client_reader, server_writer)),
            asyncio.create_task(self._pump(server_reader, client_writer)),
        ]
        self._tasks.update(pumps)
        await asyncio.gather(*pumps, return_exceptions=True)

    async def _pump(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        with contextlib.suppress(ConnectionError, OSError):
            while data := await reader.read(65536):
                await self._open.wait()
                writer.write(data)
                await writer.drain()
        writer.close()


async def start_silent_server() -> tuple[asyncio.Server, int]:
    """Start a TCP server that accepts connections and never replies."""

    async def swallow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        with contextlib.suppress(ConnectionError, OSError):
            while await reader.read(65536):
                pass
        writer.close()

    server = await asyncio.start_server(swallow, LOCALHOST, 0)
    return server, server.sockets[0].getsockname()[1]


async def wait_until_closed(conn: Any) -> None:
    """Wait for a connection to close; the test's own timeout bounds the wait."""
    await conn.wait_closed(timeout=5)
