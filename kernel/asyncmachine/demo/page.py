"""``browser-bar-<id>``: the page's machine, connected to server-foo by the relay.

:class:`BarPage` runs in the JupyterLite page's Pyodide kernel (the bar
notebook) and, for tests and benchmarks, in CPython. It opens one WebSocket to
the relay's ``/rpc``, which carries two sync sessions: the page's mirror of
``server-foo`` (``browser-foo-<id>``), and the server's mirror of the page's
bar machine, which the page offers as a state source. It exposes the bar
machine's REPL endpoint through a relay listen tunnel, so that
``am-repl -d DIR`` on the server's host reaches it, and sends the bar machine's
telemetry to the server's debugger through the relay's ``/dbg.ws``.

Flows: the user submits a text, bar gets ``SubmitMsg``, adds ``Msg`` to itself
and to its mirror of foo with its event, so foo learns the author from the
mutation's source. Hellos arrive as ``Msg`` mutations from server-foo. The
mirror's ``Bored`` shows "foo is bored".

A lost connection is dialed again with backoff, and every session repeats its
handshake, so the page reconnects when the server restarts.

Everything awaits (no JSPI needed): connecting, mirror mutations, diagrams.

In the page the relay's address comes from the kernel worker's location, and
the token from the cookie that the relay set when it served the page.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
from typing import Any
from urllib.parse import urlsplit

import asyncmachine as am

from .foo import is_message, message_author
from .page_view import PageView, RecordingView, ViewLogHandler, WidgetView

__all__ = ["RPC_PATH", "SERVER_ID", "BarPage", "page_origin"]

log = logging.getLogger("asyncmachine.demo")

SERVER_ID = "server-foo"
RPC_PATH = "/rpc"
DBG_PATH = "/dbg.ws"
# Seconds between attempts to open a whole new connection after the peer gave
# up reconnecting (its own retries use backoff up to 5 s).
_RESTART_DELAY = 5.0


def in_pyodide() -> bool:
    """Return whether this runs in Pyodide (the browser kernel)."""
    return sys.platform == "emscripten"


def page_origin() -> str:
    """Return the page's ``http://HOST:PORT``, read from the kernel worker.

    A Web Worker cannot read the page's URL, but its own location has the
    same origin, because JupyterLite serves the worker from the site.

    Raises:
        RuntimeError: Not running in Pyodide.
    """
    if not in_pyodide():
        raise RuntimeError("page_origin() works only in the browser; pass relay_url")
    import js

    return str(js.location.origin)


def _ws_url(relay_url: str, path: str) -> str:
    parts = urlsplit(relay_url)
    scheme = {"https": "wss", "wss": "wss"}.get(parts.scheme, "ws")
    return f"{scheme}://{parts.netloc}{path}"


class BarPageHandlers:
    """Handlers of the page's ``browser-bar-<id>`` machine."""

    def __init__(self, page: BarPage) -> None:
        self.page = page

    def SubmitMsgEnter(self, e: am.Event) -> bool:
        return is_message(e)

    def SubmitMsgState(self, e: am.Event) -> None:
        text = e.args["msg"]
        # Queued: this handler runs inside bar's own transition.
        self.page.bar.add("Msg", {"msg": text}, event=e)
        foo = self.page.foo
        if foo is None or not self.page.connected:
            self.page.view.add_message(f"not sent, {SERVER_ID} is not connected")
            return
        future = foo.add("Msg", {"msg": text}, event=e)
        future.add_done_callback(self.page._on_message_sent)

    def MsgEnter(self, e: am.Event) -> bool:
        return is_message(e)

    def MsgState(self, e: am.Event) -> None:
        self.page.view.add_message(f"[{message_author(e)}] {e.args['msg']}")

    def ExceptionState(self, e: am.Event) -> None:
        log.error("%s: error: %r", self.page.bar.id, self.page.bar.err())


class FooWatcher:
    """Handlers of the page's mirror of server-foo: they run on synced changes."""

    def __init__(self, page: BarPage) -> None:
        self.page = page

    def BoredState(self, e: am.Event) -> None:
        self.page.view.add_message("foo is bored")
        self.page.view.set_bored(True)

    def BoredEnd(self, e: am.Event) -> None:
        self.page.view.set_bored(False)


class ClientWatcher:
    """Handlers of the mirror's client part (``rc-<id>``): connection status."""

    def __init__(self, page: BarPage) -> None:
        self.page = page

    def ReadyState(self, e: am.Event) -> None:
        self.page._set_connected(True)

    def ReadyEnd(self, e: am.Event) -> None:
        self.page._set_connected(False)


class BarPage:
    """The page's bar machine, its connection to server-foo and its view.

    Args:
        bar: The page's ``browser-bar-<id>`` machine (the bar schema); the page
            binds its handlers to it.
        relay_url: The relay's ``http://HOST:PORT``; in the browser, None reads
            the page's origin.
        token: The relay's token for CPython clients; None in the browser,
            where the token cookie goes with every WebSocket.
        view: Where the page shows its output; None makes a
            :class:`WidgetView` on :meth:`show`, or a :class:`RecordingView`.
        repl: Expose the bar machine's REPL endpoint through a relay tunnel.
        diagrams: Show live diagrams of bar's mirror of foo (needs the
            browser's lite_graphviz); None: only in the browser.
        telemetry: Send the bar machine's transitions to the server's debugger
            through the relay's ``/dbg.ws``; None: only in the browser, where
            the token cookie authenticates that WebSocket.
        connect_timeout: Seconds for opening one WebSocket.
    """

    def __init__(
        self,
        bar: am.Machine,
        *,
        relay_url: str | None = None,
        token: str | None = None,
        view: PageView | None = None,
        repl: bool = True,
        diagrams: bool | None = None,
        telemetry: bool | None = None,
        connect_timeout: float = 10.0,
    ) -> None:
        self.bar = bar
        self.relay_url = relay_url or page_origin()
        self.token = token
        self.view: PageView = view if view is not None else RecordingView()
        self._view_given = view is not None
        self.repl = repl
        self.diagrams = in_pyodide() if diagrams is None else diagrams
        self.telemetry = in_pyodide() if telemetry is None else telemetry
        self.connect_timeout = connect_timeout
        self.suffix = bar.id.removeprefix("browser-bar-")
        self.foo: Any = None
        self.peer: Any = None
        self.tunnel: Any = None
        self._tunnel_task: asyncio.Task[None] | None = None
        self.connections = 0
        self._source: Any = None
        self._connected = asyncio.Event()
        self._closed = False
        self._task: asyncio.Task[None] | None = None
        self._foo_handle: Any = None
        self._foo_diagram: Any = None
        self._log_handler: ViewLogHandler | None = None
        bar.bind_handlers(BarPageHandlers(self))

    @property
    def rpc_url(self) -> str:
        """The WebSocket URL of the sync sessions."""
        return _ws_url(self.relay_url, RPC_PATH)

    @property
    def connected(self) -> bool:
        """Whether the mirror of server-foo is synced over an open connection."""
        return self._connected.is_set()

    # -- view ----------------------------------------------------------------------

    def show(self) -> BarPage:
        """Display the widgets and send this package's log lines to the page's log.

        Without it the log goes wherever the process's logging goes, which in
        a notebook is the cell's stderr.
        """
        from IPython.display import display

        if not self._view_given and not isinstance(self.view, WidgetView):
            self.view = WidgetView()
        display(self.view)
        if self.diagrams:
            self._foo_handle = display(
                f"the diagram of {SERVER_ID} appears once it is connected",
                display_id=True,
            )
        self._install_log_handler()
        return self

    def _install_log_handler(self) -> None:
        logger = logging.getLogger("asyncmachine")
        for handler in list(logger.handlers):
            if isinstance(handler, ViewLogHandler):
                logger.removeHandler(handler)
        self._log_handler = ViewLogHandler(self.view)
        logger.addHandler(self._log_handler)
        logger.setLevel(logging.INFO)
        logger.propagate = False

    # -- lifecycle -----------------------------------------------------------------

    def start(self) -> asyncio.Task[None]:
        """Connect in the background (and reconnect); return the running task."""
        if self._task is None:
            self.view.on_submit(self.submit)
            self._task = asyncio.get_running_loop().create_task(
                self._run(), name=f"page-{self.bar.id}"
            )
        return self._task

    async def wait_connected(self) -> Any:
        """Wait until the mirror of server-foo is synced; return it."""
        await self._connected.wait()
        return self.foo

    def submit(self, text: str) -> am.Result:
        """Submit a text as the user: add ``SubmitMsg`` to the bar machine."""
        return self.bar.add("SubmitMsg", {"msg": text})

    async def close(self) -> None:
        """Close the connection and the tunnel; the machine stays."""
        if self._closed:
            return
        self._closed = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self._close_connection("page closed")
        if self._tunnel_task is not None:
            self._tunnel_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._tunnel_task
        if self.tunnel is not None:
            await self.tunnel.close()
        if self._source is not None:
            await self._source.close()
        if self._foo_diagram is not None:
            self._foo_diagram.stop()
        self._set_connected(False, status="closed")

    # -- connection ----------------------------------------------------------------

    def _set_connected(self, connected: bool, *, status: str | None = None) -> None:
        if connected:
            self._connected.set()
            self.connections += 1
            text = f"{self.bar.id}: connected to {SERVER_ID}"
        else:
            self._connected.clear()
            text = status or f"{self.bar.id}: connection lost, reconnecting"
        self.view.set_status(text, connected=connected)

    def _on_message_sent(self, future: asyncio.Future[am.Result]) -> None:
        if future.cancelled():
            return
        err = future.exception()
        if err is not None:
            log.warning("%s: message not delivered: %r", self.bar.id, err)
            self.view.add_message(f"not delivered: {err}")
            self.bar.add_err_state("ErrNetwork", err)

    def _headers(self) -> dict[str, str] | None:
        if self.token is None or in_pyodide():
            return None
        return {"Authorization": f"Bearer {self.token}"}

    async def _run(self) -> None:
        from asyncmachine import rpc

        self._source = rpc.StateSource(self.bar, push_interval=0.01)
        if self.repl:
            # The tunnel needs its own WebSocket, so it opens while the page
            # connects to server-foo instead of before.
            self._tunnel_task = asyncio.get_running_loop().create_task(
                self._start_tunnel(), name=f"page-tunnel-{self.bar.id}"
            )
        if self.telemetry:
            self._attach_telemetry()
        while not self._closed:
            self.view.set_status(
                f"{self.bar.id}: connecting to {SERVER_ID} at {self.rpc_url}",
                connected=False,
            )
            try:
                await self._connect(rpc)
            except asyncio.CancelledError:
                raise
            except Exception as err:
                log.warning(
                    "%s: connecting to %s failed: %r; trying again in %.0f s",
                    self.bar.id,
                    SERVER_ID,
                    err,
                    _RESTART_DELAY,
                )
                await self._close_connection("connecting failed")
                self.view.set_status(
                    f"{self.bar.id}: {SERVER_ID} not reachable, trying again",
                    connected=False,
                )
                await asyncio.sleep(_RESTART_DELAY)
                continue
            # The peer redials lost connections by itself; it gives up only
            # after its retries, and then this loop starts over.
            await self.foo.client.when("ConnRetryFailed")
            log.warning("%s: reconnecting gave up; starting over", self.bar.id)
            await self._close_connection("reconnecting gave up")

    async def _connect(self, rpc: Any) -> None:
        origin = _origin(self.relay_url)
        self.peer = await rpc.open_peer(
            self.rpc_url,
            sources=[self._source],
            connect_timeout=self.connect_timeout,
            retry=rpc.RetryPolicy(attempts=30, backoff=0.25, max_backoff=5.0),
            origin=origin,
            headers=self._headers(),
            name=self.bar.id,
        )
        self.foo = await self.peer.mirror(
            id=self.bar.id,
            source_id=SERVER_ID,
            mirror_id=f"browser-foo-{self.suffix}",
            handlers=FooWatcher(self),
        )
        self.foo.client.bind_handlers(ClientWatcher(self))
        if self.foo.client.is_active("Ready"):
            self._set_connected(True)
        log.info("%s: connected to %s at %s", self.bar.id, SERVER_ID, self.rpc_url)
        if self.diagrams:
            await self._show_foo_diagram()

    async def _show_foo_diagram(self) -> None:
        from .live_svg import LiveSvg

        if self._foo_diagram is not None:
            self._foo_diagram.stop()
        try:
            self._foo_diagram = await LiveSvg(self.foo, self._foo_handle).show()
        except Exception as err:
            log.warning("diagram of %s not shown: %r", self.foo.id, err)

    async def _close_connection(self, reason: str) -> None:
        peer, self.peer = self.peer, None
        self._connected.clear()
        if peer is not None:
            await peer.close(reason)
        if self.foo is not None:
            self.foo.dispose()

    def _attach_telemetry(self) -> None:
        from asyncmachine import telemetry

        url = _ws_url(self.relay_url, DBG_PATH)
        try:
            telemetry.attach(self.bar, url)
        except (ImportError, ValueError) as err:
            log.warning("%s: no telemetry to %s: %r", self.bar.id, url, err)

    async def _start_tunnel(self) -> None:
        from asyncmachine.relay import serve_tunnel
        from asyncmachine.rpc.repl import ReplEndpoint, ReplService

        endpoint = ReplEndpoint(self.bar, None)
        try:
            self.tunnel = await serve_tunnel(
                self.relay_url,
                None if in_pyodide() else self.token,
                self.bar.id,
                lambda: ReplService(endpoint),
                connect_timeout=self.connect_timeout,
            )
        except Exception as err:
            # The page works without it; only am-repl cannot reach this machine.
            log.warning(
                "%s: REPL tunnel through %s not opened: %r",
                self.bar.id,
                self.relay_url,
                err,
            )


def _origin(relay_url: str) -> str:
    parts = urlsplit(relay_url)
    scheme = "https" if parts.scheme in ("https", "wss") else "http"
    return f"{scheme}://{parts.netloc}"
