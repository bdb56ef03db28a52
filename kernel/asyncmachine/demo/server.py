"""``server-foo`` for browser pages: relay, sync sessions, hellos, REPL, debugger.

One :class:`DemoServer` runs on one asyncio loop:

- the relay serves the offline JupyterLite site and terminates the pages'
  WebSockets at ``/rpc``;
- each page opens one WebSocket that carries two sync sessions: the page's
  mirror of ``server-foo`` (``browser-foo-<id>``) and the server's mirror of the
  page's ``browser-bar-<id>`` (``server-bar-<id>``). The server opens the second
  as soon as the page's first hello gives the page's machine id;
- every ``hello_every`` seconds ``server-foo`` adds ``Msg`` "hello" to itself
  and forwards it to each page whose ``Msg`` tick, as read from the server's
  mirror, is still below ``hello_limit``;
- ``server-foo`` has a REPL endpoint with an address file, and the pages' REPL
  endpoints reach the same directory through relay tunnels;
- telemetry of ``server-foo`` and of the server's mirrors goes to an in-process
  debugger collector over TCP, and the pages' telemetry reaches it through the
  relay's ``/dbg.ws``.

Usage::

    server = DemoServer(ServerConfig(site_dir=site, repl_dir=repl, token=token))
    await server.start()
    print(server.page_url)
    ...
    await server.stop()
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncmachine as am
from asyncmachine import dbg, telemetry
from asyncmachine.relay import Relay
from asyncmachine.rpc import (
    Mirror,
    Peer,
    SourceSession,
    StateSource,
    source_ws_handler,
)
from asyncmachine.rpc.repl import ReplEndpoint, expose_repl
from asyncmachine.rpc.wire import ErrorMessage, Hello

from .foo import FooHandlers, message_author
from .states import FOO_SCHEMA
from .transcript import Transcript, TranscriptTracer

__all__ = [
    "DBG_PATH",
    "DEFAULT_PORT",
    "NOTEBOOK_URL",
    "PAGE_ID_PATTERN",
    "RPC_PATH",
    "SERVER_ID",
    "DemoServer",
    "PageLink",
    "ServerConfig",
]

log = logging.getLogger("asyncmachine.demo")

SERVER_ID = "server-foo"
DEFAULT_PORT = 12733
RPC_PATH = "/rpc"
"""Path of the WebSocket that carries a page's sync sessions."""
DBG_PATH = "/dbg.ws"
"""Path of the WebSocket that carries a page's telemetry to the collector."""
NOTEBOOK_URL = "notebooks/index.html?path=bar.ipynb"
"""The redirect target of the relay's ``/``: the bar notebook in JupyterLite."""
PAGE_ID_PATTERN = re.compile(r"browser-bar-[a-z0-9]{6}")
"""Machine ids that pages may use; other mirrors of server-foo are rejected."""

# Seconds between WebSocket pings, which detect pages that vanished without
# closing their socket.
_HEARTBEAT = 20.0
# Seconds allowed for connecting to an old address file's endpoint.
_STALE_CHECK_TIMEOUT = 0.5


@dataclass(frozen=True)
class ServerConfig:
    """Addresses, directories and timings of a :class:`DemoServer`.

    Times are in seconds.

    Attributes:
        site_dir: The built JupyterLite site, or None to serve no site.
        repl_dir: Directory of the address files of every REPL endpoint.
        token: Secret of the relay's WebSockets; None only on loopback.
        host: Address of the relay; port 0 picks a free port.
        hello_every: Seconds between two hellos.
        hello_limit: A page gets hellos while its ``Msg`` tick is below this.
        bored_after: Seconds without a message before foo is ``Bored``.
        dbg_addr: ``HOST:PORT`` of the debugger collector; None for none.
        push_interval: Seconds between clock pushes of server-foo to a page.
    """

    site_dir: Path | None
    repl_dir: Path
    token: str | None
    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    hello_every: float = 10.0
    hello_limit: int = 20
    bored_after: float = 15.0
    dbg_addr: str | None = "127.0.0.1:0"
    push_interval: float = 0.01


class PageLink:
    """The server's side of one connected page."""

    def __init__(self, bar_id: str, peer: Peer) -> None:
        self.bar_id = bar_id
        self.peer = peer
        # The server's mirror of the page's bar machine, once synced.
        self.mirror: Mirror | None = None
        self.connected_at = time.monotonic()
        self.hellos = 0
        self.closed = False

    @property
    def mirror_id(self) -> str:
        """Machine id of the server's mirror of the page: ``server-bar-<id>``."""
        return "server-bar-" + self.bar_id.removeprefix("browser-bar-")

    @property
    def ready(self) -> bool:
        """Whether the server's mirror of the page is synced and usable."""
        return not self.closed and self.mirror is not None and self.peer.connected

    def __repr__(self) -> str:
        return f"<PageLink {self.bar_id} {'ready' if self.ready else 'not ready'}>"


class MessageLog:
    """The last messages server-foo printed, with a wait for the next one.

    Args:
        max_items: Messages kept; older ones are dropped, so that a server
            that runs for days does not grow without bound.
    """

    def __init__(self, max_items: int = 1000) -> None:
        self.items: list[tuple[str, str]] = []
        self.max_items = max_items
        # Messages dropped from the front of items so far.
        self._dropped = 0
        self._changed = asyncio.Event()

    def append(self, author: str, text: str) -> None:
        self.items.append((author, text))
        excess = len(self.items) - self.max_items
        if excess > 0:
            del self.items[:excess]
            self._dropped += excess
        self._changed.set()

    async def wait_for(self, predicate: Callable[[str, str], bool]) -> tuple[str, str]:
        """Return the first kept or new message for which `predicate` is true."""
        # Counts every message ever appended, so that drops do not shift it.
        checked = self._dropped
        while True:
            start = max(0, checked - self._dropped)
            for author, text in self.items[start:]:
                if predicate(author, text):
                    return author, text
            checked = self._dropped + len(self.items)
            self._changed.clear()
            await self._changed.wait()


class _FooSource(StateSource):
    """server-foo's source, which accepts only page ids as client ids."""

    def check_access(self, hello: Hello) -> ErrorMessage | None:
        rejection = super().check_access(hello)
        if rejection is None and not PAGE_ID_PATTERN.fullmatch(hello.machine_id):
            return ErrorMessage(
                "no_access",
                f"client id {hello.machine_id[:80]!r} is not a page id "
                "(browser-bar- and 6 lowercase letters or digits)",
            )
        return rejection


class ServerFooHandlers(FooHandlers):
    """FooHandlers that start the hello loop and forward hellos to pages."""

    def __init__(self, server: DemoServer, machine: am.Machine) -> None:
        super().__init__(machine, server.transcript, server.config.bored_after)
        self.server = server

    def StartState(self, e: am.Event) -> None:
        self.machine.fork(self.machine.state_ctx("Start"), self.server._hello_loop())

    def MsgState(self, e: am.Event) -> None:
        super().MsgState(e)
        self.server.messages.append(message_author(e), e.args["msg"])
        for bar_id in e.args.get("to", ()):
            self.server._forward_hello(bar_id, e)


class DemoServer:
    """server-foo with its relay, REPL endpoint, debugger and connected pages.

    Args:
        config: Addresses, directories and timings.
        transcript: Where transitions and printed lines go; a new one printing
            to standard output by default.
    """

    def __init__(self, config: ServerConfig, transcript: Transcript | None = None):
        self.config = config
        self.transcript = transcript or Transcript()
        self.messages = MessageLog()
        self.pages: dict[str, PageLink] = {}
        self.relay: Relay | None = None
        self.foo: am.Machine | None = None
        self.repl: ReplEndpoint | None = None
        self.collector: dbg.Collector | None = None
        self._source: _FooSource | None = None
        self._page_changed = asyncio.Event()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._stopped = False

    # -- addresses ---------------------------------------------------------------

    @property
    def page_url(self) -> str:
        """The URL of the bar notebook, with the token; print it, never log it."""
        assert self.relay is not None, "start the server first"
        return self.relay.page_url

    @property
    def url(self) -> str:
        """The relay's ``http://HOST:PORT``."""
        assert self.relay is not None, "start the server first"
        return self.relay.url

    # -- lifecycle ---------------------------------------------------------------

    async def start(self) -> None:
        """Start the relay, server-foo, its REPL endpoint and the debugger.

        Raises:
            OSError: An address cannot be bound; errno EADDRINUSE when the
                relay's port is in use.
        """
        config = self.config
        relay = Relay(
            config.site_dir,
            host=config.host,
            port=config.port,
            token=config.token,
            repl_dir=config.repl_dir,
            index_url=NOTEBOOK_URL,
        )
        # Binds first, so that a port in use fails before anything else starts.
        await relay.start()
        self.relay = relay
        try:
            await self._start_after_relay()
        except BaseException:
            await self.stop()
            raise
        log.info(
            "demo server started: %s on %s, REPL endpoint %s, debugger %s",
            SERVER_ID,
            relay.url,
            self.repl.address if self.repl else "none",
            self.collector.address if self.collector else "none",
        )

    async def _start_after_relay(self) -> None:
        config = self.config
        assert self.relay is not None
        remove_stale_address_files(config.repl_dir)

        foo = am.Machine(FOO_SCHEMA, id=SERVER_ID)
        self.foo = foo
        foo.add_tracer(TranscriptTracer(self.transcript, foo))
        foo.bind_handlers(ServerFooHandlers(self, foo))

        if config.dbg_addr is not None:
            host, _, port = config.dbg_addr.rpartition(":")
            self.collector = dbg.Collector(
                host, int(port), allowed_origins=self.relay.allowed_origins
            )
            await self.collector.start()
            telemetry.attach(foo, self.collector.address)
            # NOTE: this route has no closer, because the collector has no
            # public call that closes only its WebSockets. So stop() waits up to
            # 1 s for the relay to cancel this route's handlers.
            self.relay.add_rpc_route(DBG_PATH, self.collector.ws_handler)

        self.repl = await expose_repl(foo, "127.0.0.1:0", config.repl_dir)

        self._source = _FooSource(
            foo, push_interval=config.push_interval, on_session_open=self._on_session
        )
        handler = source_ws_handler(
            self._source,
            allowed_origins=self.relay.allowed_origins,
            heartbeat=_HEARTBEAT,
            plain_service=None,
        )
        self.relay.add_rpc_route(RPC_PATH, handler.handle, close=handler.close)
        foo.add("Start")

    async def stop(self, dump_path: Path | None = None) -> None:
        """Close every connection, remove the address files and stop.

        Args:
            dump_path: Where to write the debugger's dump of the whole run,
                after the last telemetry is flushed; None writes none.

        Raises:
            OSError: The dump cannot be written (everything else is stopped).
        """
        if self._stopped:
            return
        self._stopped = True
        log.info("demo server stopping")
        if self.foo is not None:
            self.foo.remove("Start")
        if self.relay is not None:
            # Says bye to the pages' mirrors and closes their WebSockets and
            # tunnels, which removes the pages' address files.
            await self.relay.stop()
        for link in list(self.pages.values()):
            await self._close_link(link, "server stopping")
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self.repl is not None:
            await self.repl.close()

        dump_error: OSError | None = None
        if self.collector is not None:
            await telemetry.flush()
            if dump_path is not None:
                try:
                    self.collector.dump(dump_path)
                except OSError as err:
                    dump_error = err
            await telemetry.close()
            await self.collector.stop()
        if self.foo is not None:
            self.foo.dispose()
        log.info("demo server stopped")
        if dump_error is not None:
            raise dump_error

    # -- pages -------------------------------------------------------------------

    def _spawn(self, coroutine: Any, name: str) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coroutine, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def _on_session(self, session: SourceSession) -> None:
        """Link the page of a new session, whose mirror of server-foo sent its hello."""
        peer, bar_id = session.peer, session.client_id
        old = self.pages.get(bar_id)
        if old is not None and old.peer is peer:
            return
        link = PageLink(bar_id, peer)
        self.pages[bar_id] = link
        self._spawn(self._serve_page(link, old), f"demo-page-{bar_id}")

    async def _serve_page(self, link: PageLink, old: PageLink | None) -> None:
        """Open the server's mirror of a page, then unlink it when it disconnects."""
        conn = link.peer.conn
        conn_id = conn.conn_id if conn is not None else "?"
        if old is not None:
            log.info("page %s connected again; closing its old connection", link.bar_id)
            await self._close_link(old, "the page connected again")

        if not await self._open_page_mirror(link, conn_id):
            return
        self.transcript.record(link.bar_id, "page connected")
        self.transcript.echo(f"page {link.bar_id} connected")
        log.info("page %s connected on connection %s", link.bar_id, conn_id)
        self._page_changed.set()

        try:
            if conn is not None:
                await conn.wait_closed()
        finally:
            reason = getattr(conn, "close_reason", None) or "closed"
            if self.pages.get(link.bar_id) is link:
                self.transcript.record(link.bar_id, "page disconnected")
                self.transcript.echo(f"page {link.bar_id} disconnected")
                log.info(
                    "page %s on connection %s disconnected: %s",
                    link.bar_id,
                    conn_id,
                    reason,
                )
            await self._close_link(link, reason)
            self._page_changed.set()

    async def _open_page_mirror(self, link: PageLink, conn_id: str) -> bool:
        """Open the server's mirror of the page's machine; return whether it opened."""
        try:
            mirror = await link.peer.mirror(
                id=link.mirror_id,
                source_id=link.bar_id,
                mirror_id=link.mirror_id,
            )
        except Exception as err:
            log.error(
                "page %s on connection %s: opening the mirror of its machine "
                "failed: %r",
                link.bar_id,
                conn_id,
                err,
            )
            await self._close_link(link, "the mirror of the page failed")
            return False
        link.mirror = mirror
        mirror.add_tracer(TranscriptTracer(self.transcript, mirror))
        if self.collector is not None:
            telemetry.attach(mirror, self.collector.address)
        return True

    async def _close_link(self, link: PageLink, reason: str) -> None:
        if link.closed:
            return
        link.closed = True
        if self.pages.get(link.bar_id) is link:
            del self.pages[link.bar_id]
        await link.peer.close(reason)
        if link.mirror is not None:
            link.mirror.dispose()

    async def wait_page(self, bar_id: str | None = None) -> PageLink:
        """Wait until a page (the given one, or any) is connected; return its link."""
        while True:
            for link in self.pages.values():
                if link.ready and bar_id in (None, link.bar_id):
                    return link
            self._page_changed.clear()
            await self._page_changed.wait()

    # -- hellos ------------------------------------------------------------------

    async def _hello_loop(self) -> None:
        """Say hello every hello_every seconds to the pages below the limit."""
        foo = self.foo
        assert foo is not None
        while True:
            await asyncio.sleep(self.config.hello_every)
            due = [
                link.bar_id
                for link in self.pages.values()
                if link.ready
                and link.mirror is not None
                and link.mirror.tick("Msg") < self.config.hello_limit
            ]
            if not due:
                continue
            args = {"msg": "hello", "author": foo.id, "to": due}
            result = foo.add("Msg", args)
            if result.canceled:
                log.warning("%s: hello to %s was canceled", foo.id, ", ".join(due))

    def _forward_hello(self, bar_id: str, e: am.Event) -> None:
        """Add foo's Msg to the server's mirror of a page, as foo's event."""
        link = self.pages.get(bar_id)
        if link is None or link.mirror is None or not link.ready:
            log.info("hello to %s skipped: the page is not connected", bar_id)
            return
        link.hellos += 1
        future = link.mirror.add("Msg", {"msg": e.args["msg"]}, event=e)
        future.add_done_callback(lambda done: _log_hello_result(bar_id, done))


def _log_hello_result(bar_id: str, future: asyncio.Future[am.Result]) -> None:
    if future.cancelled():
        return
    err = future.exception()
    if err is not None:
        log.warning("hello to page %s failed: %r", bar_id, err)
    elif future.result().canceled:
        log.warning("hello to page %s was canceled by the page", bar_id)


def remove_stale_address_files(repl_dir: Path) -> list[Path]:
    """Remove address files whose endpoint no longer accepts connections.

    Files of endpoints that still run, e.g. of another am-demo sharing the
    directory, stay. Returns the removed files.
    """
    removed: list[Path] = []
    if not repl_dir.is_dir():
        return removed
    for path in sorted(repl_dir.glob("*.addr")):
        try:
            host, _, port = path.read_text(encoding="utf-8").strip().rpartition(":")
            with socket.create_connection(
                (host.strip("[]"), int(port)), timeout=_STALE_CHECK_TIMEOUT
            ):
                continue
        except (OSError, ValueError):
            pass
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
            removed.append(path)
            log.info("removed stale address file %s", path)
    return removed
