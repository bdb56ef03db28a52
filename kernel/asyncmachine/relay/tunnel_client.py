"""The page's side of a listen tunnel: serve an rpc service on the relay's host.

A machine in a browser cannot listen on TCP, so the relay listens for it.
:func:`serve_tunnel` keeps a control WebSocket open to ``/tunnel/listen``. For
each TCP client that the relay announces there, it opens a data WebSocket to
``/tunnel/data`` and serves an rpc :class:`~asyncmachine.rpc.AsyncConnection`
over it. A stock ``rpyc.connect(host, port)`` on the relay's host then reaches
the page's service. When the control socket drops, it reconnects with
exponential backoff; the relay then binds a new port and rewrites the address
file.

The same code runs in CPython (aiohttp, imported on first use) and in Pyodide
(the browser's WebSocket); ``sys.platform == "emscripten"`` selects the latter.
Importing this module needs neither.

Usage::

    tunnel = await serve_tunnel(
        "http://127.0.0.1:12733", token, "browser-bar-x7k", BarReplService
    )
    print("REPL endpoint on", await tunnel.wait_listening())
    ...
    await tunnel.close()
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import sys
from collections.abc import Callable
from typing import Any, Protocol
from urllib.parse import urlencode, urlsplit, urlunsplit

from asyncmachine.rpc import AsyncConnection, ConnectionOptions

__all__ = ["TunnelClient", "serve_tunnel"]

logger = logging.getLogger("asyncmachine.relay")

DEFAULT_CONNECT_TIMEOUT = 10.0
"""Seconds allowed for opening a WebSocket, and for the first rpc request."""

# Largest control message accepted from the relay, in bytes.
_CONTROL_MAX_MESSAGE_SIZE = 4096
# WebSocket readyState values from the WHATWG WebSocket standard.
_BROWSER_OPEN = 1


class _ControlSocket(Protocol):
    """The control WebSocket, as either platform provides it."""

    close_reason: str

    async def receive(self) -> str | None:
        """Return the next text message, or None once the socket closed."""

    async def close(self) -> None:
        """Close the socket and release its resources."""


class _AiohttpControlSocket:
    """Control socket over aiohttp (CPython)."""

    def __init__(self, session: Any, ws: Any) -> None:
        self._session = session
        self._ws = ws
        self.close_reason = "open"

    @classmethod
    async def open(
        cls, url: str, *, origin: str | None, headers: dict[str, str], timeout: float
    ) -> _AiohttpControlSocket:
        import aiohttp

        session = aiohttp.ClientSession()
        try:
            ws = await asyncio.wait_for(
                session.ws_connect(
                    url,
                    origin=origin,
                    headers=headers,
                    max_msg_size=_CONTROL_MAX_MESSAGE_SIZE,
                ),
                timeout,
            )
        except BaseException:
            await session.close()
            raise
        return cls(session, ws)

    async def receive(self) -> str | None:
        import aiohttp

        message = await self._ws.receive()
        if message.type is aiohttp.WSMsgType.TEXT:
            return message.data
        if message.type is aiohttp.WSMsgType.BINARY:
            self.close_reason = "binary message received on the control socket"
        elif message.type is aiohttp.WSMsgType.ERROR:
            self.close_reason = f"WebSocket error: {self._ws.exception()!r}"
        else:
            self.close_reason = f"closed with code {self._ws.close_code}"
        return None

    async def close(self) -> None:
        try:
            await self._ws.close()
        finally:
            await self._session.close()


class _BrowserControlSocket:
    """Control socket over the browser's ``WebSocket`` (Pyodide).

    The JavaScript event handlers only put messages into a queue.
    """

    def __init__(self, url: str) -> None:
        from js import WebSocket
        from pyodide.ffi import create_proxy

        self._url = url
        self._loop = asyncio.get_running_loop()
        self.opened: asyncio.Future[None] = self._loop.create_future()
        self._messages: asyncio.Queue[str | None] = asyncio.Queue()
        self.close_reason = "open"
        self._ws = WebSocket.new(url)
        self._handlers = {
            "open": create_proxy(self._on_open),
            "message": create_proxy(self._on_message),
            "error": create_proxy(self._on_error),
            "close": create_proxy(self._on_close),
        }
        for event_name, handler in self._handlers.items():
            self._ws.addEventListener(event_name, handler)

    @classmethod
    async def open(cls, url: str, *, timeout: float) -> _BrowserControlSocket:
        # The browser sets the Origin header itself.
        socket = cls(url)
        try:
            await asyncio.wait_for(asyncio.shield(socket.opened), timeout)
        except BaseException:
            await socket.close()
            raise
        return socket

    def _on_open(self, event: Any) -> None:
        if not self.opened.done():
            self.opened.set_result(None)

    def _on_message(self, event: Any) -> None:
        data = event.data
        if isinstance(data, str):
            self._messages.put_nowait(data)
        else:
            self.close_reason = "binary message received on the control socket"
            self._messages.put_nowait(None)

    def _on_error(self, event: Any) -> None:
        # The browser hides the cause; a close event follows.
        if not self.opened.done():
            self.opened.set_exception(
                ConnectionError("the browser could not open the control WebSocket")
            )

    def _on_close(self, event: Any) -> None:
        self.close_reason = f"closed with code {event.code} {event.reason!r}"
        if not self.opened.done():
            self.opened.set_exception(ConnectionError(self.close_reason))
        self._messages.put_nowait(None)
        # A proxy must not be destroyed while it runs.
        self._loop.call_soon(self._release_handlers)

    def _release_handlers(self) -> None:
        for event_name, handler in self._handlers.items():
            self._ws.removeEventListener(event_name, handler)
            handler.destroy()
        self._handlers = {}

    async def receive(self) -> str | None:
        return await self._messages.get()

    async def close(self) -> None:
        if self._ws.readyState <= _BROWSER_OPEN:
            self._ws.close()
        if not self.opened.done():
            self.opened.cancel()


def _in_pyodide() -> bool:
    return sys.platform == "emscripten"


def _websocket_base_url(relay_url: str) -> tuple[str, str]:
    """Return the relay's ``ws(s)://host:port`` URL and its HTTP origin."""
    parts = urlsplit(relay_url)
    schemes = {"http": "ws", "https": "wss", "ws": "ws", "wss": "wss"}
    scheme = schemes.get(parts.scheme)
    if scheme is None or not parts.netloc:
        raise ValueError(
            f"invalid relay URL {relay_url!r}: expected http://HOST:PORT or "
            "ws://HOST:PORT"
        )
    http_scheme = "https" if scheme == "wss" else "http"
    base = urlunsplit((scheme, parts.netloc, parts.path.rstrip("/"), "", ""))
    return base, f"{http_scheme}://{parts.netloc}"


class TunnelClient:
    """Keeps a listen tunnel open and serves each of its connections.

    Create it with :func:`serve_tunnel`.

    Args:
        relay_url: The relay's URL, ``http://HOST:PORT`` or ``ws://HOST:PORT``.
        token: The relay's token, or None when it requires none.
        machine_id: The machine's id; the relay names the address file after it.
        service_factory: What each TCP client reaches: an rpyc Service class or
            a factory called once per connection (or one shared instance).
        addr: ``HOST:PORT`` the relay should listen on; it must be in the
            relay's listen allowlist.
        origin: ``Origin`` header sent in CPython; None sends the relay's own
            origin. Browsers always send the page's origin instead.
        options: Limits and timeouts of each rpc connection.
        connect_timeout: Seconds allowed for opening each WebSocket and for the
            TCP client to reply to the first rpc request.
        min_backoff: First delay before reconnecting the control socket, in
            seconds; it doubles after each failure up to max_backoff.
        max_backoff: Maximum delay between reconnection attempts, in seconds.
    """

    def __init__(
        self,
        relay_url: str,
        token: str | None,
        machine_id: str,
        service_factory: Callable[[], Any] | Any,
        *,
        addr: str = "127.0.0.1:0",
        origin: str | None = None,
        options: ConnectionOptions | None = None,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
        min_backoff: float = 0.5,
        max_backoff: float = 30.0,
    ) -> None:
        if not 0 < min_backoff <= max_backoff:
            raise ValueError(
                f"backoff must satisfy 0 < min_backoff <= max_backoff, got "
                f"{min_backoff} and {max_backoff}"
            )
        self._base_url, default_origin = _websocket_base_url(relay_url)
        self.machine_id = machine_id
        self.addr = addr
        self.origin = origin or default_origin
        self._token = token
        self._service_factory = service_factory
        self._options = options
        self._connect_timeout = connect_timeout
        self._min_backoff = min_backoff
        self._max_backoff = max_backoff
        self.address: str | None = None
        self._listening = asyncio.Event()
        self._connections: set[AsyncConnection] = set()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._control: _ControlSocket | None = None
        self._run_task: asyncio.Task[None] | None = None
        self._closed = False

    @property
    def connections(self) -> frozenset[AsyncConnection]:
        """The rpc connections currently open through the tunnel."""
        return frozenset(conn for conn in self._connections if not conn.closed)

    @property
    def listening(self) -> bool:
        """Whether the relay currently listens for this tunnel."""
        return not self._closed and self._listening.is_set()

    def start(self) -> None:
        """Start the reconnecting control loop as a task on the running loop."""
        if self._run_task is None:
            self._run_task = asyncio.get_running_loop().create_task(
                self._run(), name=f"tunnel-{self.machine_id}"
            )

    async def wait_listening(self) -> str:
        """Wait until the relay listens for this tunnel; return its ``HOST:PORT``.

        Raises:
            ConnectionError: The client was closed.
        """
        while True:
            if self._closed:
                raise ConnectionError(f"tunnel client of {self.machine_id} is closed")
            await self._listening.wait()
            if self.address is not None:
                return self.address

    async def close(self) -> None:
        """Close the control socket and every connection, and stop reconnecting."""
        if self._closed:
            return
        self._closed = True
        self._listening.set()
        run_task, self._run_task = self._run_task, None
        if run_task is not None:
            run_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await run_task
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for conn in list(self._connections):
            await conn.aclose()
        logger.info("tunnel client of %s closed", self.machine_id)

    async def __aenter__(self) -> TunnelClient:
        self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    # -- the control loop -------------------------------------------------------

    def _url(self, path: str, **query: str) -> str:
        # Browsers cannot set WebSocket headers, so only there the token goes
        # into the URL, which the rpc transport's logs may then show.
        if self._token is not None and _in_pyodide():
            query = {"token": self._token, **query}
        return f"{self._base_url}{path}?{urlencode(query)}"

    def _headers(self) -> dict[str, str]:
        if self._token is None:
            return {}
        return {"Authorization": f"Bearer {self._token}"}

    def _describe_error(self, exc: BaseException) -> str:
        """Return the error as text for logs, with the token masked."""
        text = f"{type(exc).__name__}: {exc}"
        if self._token:
            text = text.replace(self._token, "***")
        return text

    async def _open_control(self) -> _ControlSocket:
        url = self._url("/tunnel/listen", id=self.machine_id, addr=self.addr)
        if _in_pyodide():
            return await _BrowserControlSocket.open(url, timeout=self._connect_timeout)
        return await _AiohttpControlSocket.open(
            url,
            origin=self.origin,
            headers=self._headers(),
            timeout=self._connect_timeout,
        )

    async def _run(self) -> None:
        delay = self._min_backoff
        failures = 0
        while not self._closed:
            try:
                control = await self._open_control()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                failures += 1
                logger.warning(
                    "tunnel client of %s: opening the control socket failed "
                    "(attempt %d): %s; retrying in %.1f s",
                    self.machine_id,
                    failures,
                    self._describe_error(exc),
                    delay,
                )
            else:
                self._control = control
                try:
                    if await self._read_control(control):
                        delay = self._min_backoff
                        failures = 0
                finally:
                    self._control = None
                    self._listening.clear()
                    self.address = None
                    await control.close()
                logger.warning(
                    "tunnel client of %s: control socket %s; reconnecting in %.1f s",
                    self.machine_id,
                    control.close_reason,
                    delay,
                )
            await asyncio.sleep(delay)
            delay = min(2 * delay, self._max_backoff)

    async def _read_control(self, control: _ControlSocket) -> bool:
        """Handle control messages until the socket closes.

        Returns whether the relay listened on this connection.
        """
        listened = False
        while (text := await control.receive()) is not None:
            try:
                message = json.loads(text)
            except ValueError:
                logger.warning(
                    "tunnel client of %s: ignored a control message that is not "
                    "JSON (%d characters)",
                    self.machine_id,
                    len(text),
                )
                continue
            if not isinstance(message, dict):
                continue
            if isinstance(message.get("listening"), str):
                listened = True
                self.address = message["listening"]
                self._listening.set()
                logger.info(
                    "tunnel client of %s: relay listens on %s",
                    self.machine_id,
                    self.address,
                )
            elif isinstance(message.get("open"), str):
                self._spawn(self._serve_connection(message["open"]))
            else:
                logger.debug(
                    "tunnel client of %s: ignored control message with keys %s",
                    self.machine_id,
                    sorted(message)[:5],
                )
        return listened

    def _spawn(self, coroutine: Any) -> None:
        task = asyncio.get_running_loop().create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _serve_connection(self, conn_id: str) -> None:
        url = self._url("/tunnel/data", conn=conn_id)
        try:
            conn = await self._connect_data(url)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            logger.warning(
                "tunnel client of %s: connection %s failed: %s",
                self.machine_id,
                conn_id,
                self._describe_error(exc),
            )
            return
        self._connections.add(conn)
        logger.info(
            "tunnel client of %s: serving connection %s as %s",
            self.machine_id,
            conn_id,
            conn.conn_id,
        )
        try:
            await conn.wait_closed()
        finally:
            self._connections.discard(conn)
            if not conn.closed:
                await conn.aclose()
        logger.info(
            "tunnel client of %s: connection %s ended: %s",
            self.machine_id,
            conn_id,
            conn.close_reason,
        )

    async def _connect_data(self, url: str) -> AsyncConnection:
        if _in_pyodide():
            from asyncmachine.rpc import connect_pyodide_ws

            return await connect_pyodide_ws(
                url,
                self._service_factory,
                options=self._options,
                connect_timeout=self._connect_timeout,
                fetch_root=False,
            )
        from asyncmachine.rpc import connect_ws

        return await connect_ws(
            url,
            self._service_factory,
            options=self._options,
            connect_timeout=self._connect_timeout,
            origin=self.origin,
            headers=self._headers(),
            fetch_root=False,
        )


async def serve_tunnel(
    relay_url: str,
    token: str | None,
    machine_id: str,
    service_factory: Callable[[], Any] | Any,
    **kwargs: Any,
) -> TunnelClient:
    """Start serving an rpc service through a relay listen tunnel.

    Returns at once with the client running in the background. Await
    :meth:`TunnelClient.wait_listening` for the address the relay bound, and
    :meth:`TunnelClient.close` to stop. Keyword arguments are those of
    :class:`TunnelClient`.

    Raises:
        ValueError: relay_url is not an http(s) or ws(s) URL.
    """
    client = TunnelClient(relay_url, token, machine_id, service_factory, **kwargs)
    client.start()
    return client
