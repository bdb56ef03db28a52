"""The relay server: static site, in-process rpc routes and tunnels on one port."""

from __future__ import annotations

import errno
import itertools
import logging
from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path
from urllib.parse import urlencode

from aiohttp import hdrs, web

from ..rpc._transport_tcp import is_loopback
from ._access import (
    TOKEN_QUERY_PARAMETER,
    AccessPolicy,
    reject,
    token_cookie_name,
)
from ._addresses import AddressAllowlist, format_address
from ._static import StaticSite
from ._tunnels import TunnelLimits, TunnelService

__all__ = ["DEFAULT_PORT", "Relay", "RpcHandler"]

logger = logging.getLogger("asyncmachine.relay")

DEFAULT_PORT = 12733
"""TCP port of the relay unless configured otherwise."""

RpcHandler = Callable[[web.Request], Awaitable[web.StreamResponse]]
"""An aiohttp request handler, e.g. ``WebSocketEndpoint.handle``."""

_TUNNEL_PATHS = ("/tunnel/listen", "/tunnel/data", "/tunnel/dial")
_WILDCARD_HOSTS = frozenset({"", "0.0.0.0", "::"})
# Seconds the HTTP server waits for request handlers still running at stop
# before cancelling them (WebSocket handlers of rpc routes without a close).
_SHUTDOWN_TIMEOUT = 1.0


class Relay:
    """One aiohttp server for the browser page and its WebSockets.

    Routes:

    * ``GET /...``: files of ``site_dir`` (see :class:`StaticSite`).
    * paths added with :meth:`add_rpc_route`: the application's WebSocket
      handlers, e.g. the rpc endpoint of a state source.
    * ``/tunnel/listen``, ``/tunnel/data``, ``/tunnel/dial``: TCP tunnels (see
      :mod:`asyncmachine.relay._tunnels` for the flow).

    Every WebSocket upgrade must present an allowed ``Origin`` and, when a token
    is set, the token as the ``token`` query parameter, as an
    ``Authorization: Bearer`` header, or in the token cookie. Rejections get
    HTTP 403 with a short reason. A page or redirect requested with the valid
    token in its query sets that cookie (see :mod:`asyncmachine.relay._access`),
    so the page's workers, such as a Jupyter kernel, connect without knowing
    the token.

    Args:
        site_dir: Directory of static files to serve, or None for no site.
        host: Address to bind.
        port: Port to bind; 0 picks a free one (read it from :attr:`port`).
        token: Secret every WebSocket request must present. Required unless
            host is a loopback address.
        allowed_origins: Accepted ``Origin`` values. None accepts the relay's
            own origins: ``http://127.0.0.1:PORT``, ``http://localhost:PORT``
            and ``http://HOST:PORT`` for a specific host.
        allow_no_origin: Accept WebSocket requests without an ``Origin``
            header (clients that are not browsers and do not send one).
        dial_allowlist: ``HOST:PORT`` addresses that ``/tunnel/dial`` may
            connect to. Empty: dial tunnels are disabled.
        listen_allowlist: ``HOST:PORT`` addresses that ``/tunnel/listen`` may
            bind; ``127.0.0.1:0`` means any free port on 127.0.0.1.
        repl_dir: Directory where a listen tunnel writes ``<machine-id>.addr``
            with its bound address, or None to write no files.
        max_message_size: Largest WebSocket message accepted on tunnel sockets,
            in bytes. The handlers of rpc routes set their own limit.
        index_url: Where ``/`` redirects, relative to the site, keeping the
            query string (and so the token); None serves ``index.html``.
        limits: Other tunnel limits and timeouts; its max_message_size is
            replaced by the max_message_size argument.

    Raises:
        ValueError: No token for a host that is not loopback, or an invalid
            allowlist entry or limit.
        NotADirectoryError: site_dir is not a directory.

    Usage::

        relay = Relay("build/lite", token=token, repl_dir="tmp")
        endpoint = WebSocketEndpoint(FooService, allowed_origins=...)
        relay.add_rpc_route("/rpc", endpoint.handle, close=endpoint.close)
        await relay.start()
        print(relay.page_url)
        ...
        await relay.stop()
    """

    def __init__(
        self,
        site_dir: str | Path | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = DEFAULT_PORT,
        token: str | None = None,
        allowed_origins: Iterable[str] | None = None,
        allow_no_origin: bool = False,
        dial_allowlist: Iterable[str] = (),
        listen_allowlist: Iterable[str] = ("127.0.0.1:0",),
        repl_dir: str | Path | None = None,
        max_message_size: int = 1 << 20,
        index_url: str | None = None,
        limits: TunnelLimits | None = None,
    ) -> None:
        if token is not None and not token:
            raise ValueError("token must not be empty; pass None for no token")
        if token is None and not is_loopback(host):
            raise ValueError(
                f"a token is required to listen on {host!r}, which accepts "
                "connections from other hosts; pass token=... or bind 127.0.0.1"
            )
        if type(max_message_size) is not int or max_message_size < 1024:
            raise ValueError(
                f"max_message_size must be an int of at least 1024 bytes, "
                f"got {max_message_size!r}"
            )

        self.host = host
        self._requested_port = port
        self._token = token
        self._requested_origins = (
            None if allowed_origins is None else frozenset(allowed_origins)
        )
        self._allow_no_origin = allow_no_origin
        self._site = None if site_dir is None else StaticSite(Path(site_dir), index_url)
        self.repl_dir = None if repl_dir is None else Path(repl_dir)

        base_limits = limits or TunnelLimits()
        self.limits = TunnelLimits(
            max_message_size=max_message_size,
            max_clients_per_tunnel=base_limits.max_clients_per_tunnel,
            data_timeout=base_limits.data_timeout,
            dial_timeout=base_limits.dial_timeout,
            heartbeat=base_limits.heartbeat,
        )
        self._tunnels = TunnelService(
            listen_allowlist=AddressAllowlist(listen_allowlist),
            dial_allowlist=AddressAllowlist(dial_allowlist),
            repl_dir=self.repl_dir,
            limits=self.limits,
        )

        self._rpc_routes: dict[str, RpcHandler] = {}
        self._rpc_closers: list[Callable[[], Awaitable[None]]] = []
        self._policy: AccessPolicy | None = None
        self._runner: web.AppRunner | None = None
        self._port: int | None = None
        self._stopping = False
        self._request_numbers = itertools.count(1)

    # -- addresses ------------------------------------------------------------

    @property
    def port(self) -> int:
        """The bound port (the requested one before :meth:`start`)."""
        return self._requested_port if self._port is None else self._port

    @property
    def url(self) -> str:
        """The relay's ``http://HOST:PORT`` URL, without a trailing slash."""
        return f"http://{format_address(self._public_host, self.port)}"

    @property
    def ws_url(self) -> str:
        """The relay's ``ws://HOST:PORT`` URL, without a trailing slash."""
        return f"ws://{format_address(self._public_host, self.port)}"

    @property
    def page_url(self) -> str:
        """The URL to open in a browser, with the token in its query string.

        It contains the token, so print it for the user but never log it.
        """
        if self._token is None:
            return f"{self.url}/"
        return f"{self.url}/?{urlencode({TOKEN_QUERY_PARAMETER: self._token})}"

    @property
    def token_cookie_name(self) -> str:
        """Name of the cookie that carries the token to this relay's WebSockets."""
        return token_cookie_name(self.port)

    @property
    def allowed_origins(self) -> frozenset[str]:
        """The ``Origin`` values accepted on WebSocket requests."""
        if self._requested_origins is not None:
            return self._requested_origins
        origins = {
            f"http://127.0.0.1:{self.port}",
            f"http://localhost:{self.port}",
        }
        if self.host not in _WILDCARD_HOSTS:
            origins.add(f"http://{format_address(self.host, self.port)}")
        return frozenset(origins)

    @property
    def listen_addresses(self) -> dict[str, str]:
        """The bound ``HOST:PORT`` of each open listen tunnel, by machine id."""
        return self._tunnels.listen_addresses

    @property
    def _public_host(self) -> str:
        return "127.0.0.1" if self.host in _WILDCARD_HOSTS else self.host

    # -- routes ---------------------------------------------------------------

    def add_rpc_route(
        self,
        path: str,
        handler: RpcHandler,
        *,
        close: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        """Serve an in-process WebSocket handler at a path, behind the checks.

        The relay checks Origin and token first, so only accepted requests
        reach the handler. May be called before or after :meth:`start`.

        Args:
            path: URL path, e.g. ``"/rpc"``.
            handler: aiohttp request handler that upgrades the request to a
                WebSocket, e.g. ``WebSocketEndpoint.handle``.
            close: Coroutine function that closes the handler's connections,
                e.g. ``WebSocketEndpoint.close``; :meth:`stop` awaits it.
                Without it, stop cancels the handler after 1 s.

        Raises:
            ValueError: The path does not start with ``/``, is taken, or is a
                tunnel path.
        """
        if not path.startswith("/"):
            raise ValueError(f"rpc route {path!r} must start with '/'")
        if path in _TUNNEL_PATHS or path in self._rpc_routes:
            raise ValueError(f"rpc route {path!r} is already in use")
        self._rpc_routes[path] = handler
        if close is not None:
            self._rpc_closers.append(close)

    # -- lifecycle --------------------------------------------------------------

    async def start(self) -> None:
        """Bind the port and start serving on the running loop.

        Raises:
            OSError: The address cannot be bound; errno EADDRINUSE when the port
                is in use by another process.
            RuntimeError: The relay was started before.
        """
        if self._runner is not None:
            raise RuntimeError("the relay is already started")
        if self._stopping:
            raise RuntimeError("a stopped relay cannot start again; create a new Relay")
        app = web.Application()
        app.router.add_get("/tunnel/listen", self._handle_listen)
        app.router.add_get("/tunnel/data", self._handle_data)
        app.router.add_get("/tunnel/dial", self._handle_dial)
        app.router.add_get("/{tail:.*}", self._handle_get)
        # The access log would record query strings, and so the token.
        runner = web.AppRunner(
            app,
            access_log=None,
            handle_signals=False,
            shutdown_timeout=_SHUTDOWN_TIMEOUT,
        )
        await runner.setup()
        site = web.TCPSite(runner, self.host, self._requested_port)
        address = format_address(self.host, self._requested_port)
        try:
            await site.start()
        except OSError as exc:
            await runner.cleanup()
            if exc.errno == errno.EADDRINUSE:
                raise OSError(
                    errno.EADDRINUSE,
                    f"cannot listen on {address}: the address is already in use; "
                    "stop the other server or choose another port",
                ) from exc
            if exc.errno == errno.EACCES:
                raise OSError(
                    errno.EACCES,
                    f"cannot listen on {address}: permission denied; ports below "
                    "1024 usually need root, so choose a port of 1024 or above, "
                    "or 0 for any free port",
                ) from exc
            raise OSError(
                exc.errno, f"cannot listen on {address}: {exc.strerror or exc}"
            ) from exc
        self._runner = runner
        self._port = runner.addresses[0][1]
        self._policy = AccessPolicy(
            self._token,
            self.allowed_origins,
            allow_no_origin=self._allow_no_origin,
            cookie_name=self.token_cookie_name,
        )
        logger.info(
            "relay listening on %s (site %s, token %s, repl dir %s)",
            self.url,
            self._site.root if self._site else "none",
            "required" if self._token else "not required",
            self.repl_dir or "none",
        )

    async def stop(self) -> None:
        """Close tunnels and WebSockets, remove address files, stop the server.

        Safe to call more than once.
        """
        runner, self._runner = self._runner, None
        if runner is None:
            return
        self._stopping = True
        logger.info("relay on %s stopping", self.url)
        await self._tunnels.close()
        for close in self._rpc_closers:
            try:
                await close()
            except Exception:
                logger.exception("relay: closing an rpc route failed")
        await runner.cleanup()
        logger.info("relay on %s stopped", self.url)

    async def __aenter__(self) -> Relay:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    # -- request handling -------------------------------------------------------

    def _next_request_id(self) -> str:
        return f"r{next(self._request_numbers)}"

    def _check_websocket(
        self, request: web.Request, request_id: str
    ) -> web.Response | None:
        """Return a rejection response, or None when the upgrade may proceed."""
        if self._stopping or self._policy is None:
            return reject(request, request_id, 503, "relay is stopping")
        if not web.WebSocketResponse().can_prepare(request).ok:
            return reject(request, request_id, 400, "WebSocket upgrade expected")
        reason = self._policy.rejection_reason(request)
        if reason is not None:
            return reject(request, request_id, 403, reason)
        logger.info(
            "request %s from %s: WebSocket %s accepted",
            request_id,
            request.remote,
            request.path,
        )
        return None

    async def _handle_listen(self, request: web.Request) -> web.StreamResponse:
        request_id = self._next_request_id()
        rejection = self._check_websocket(request, request_id)
        if rejection is not None:
            return rejection
        return await self._tunnels.handle_listen(request, request_id)

    async def _handle_data(self, request: web.Request) -> web.StreamResponse:
        request_id = self._next_request_id()
        rejection = self._check_websocket(request, request_id)
        if rejection is not None:
            return rejection
        return await self._tunnels.handle_data(request, request_id)

    async def _handle_dial(self, request: web.Request) -> web.StreamResponse:
        request_id = self._next_request_id()
        rejection = self._check_websocket(request, request_id)
        if rejection is not None:
            return rejection
        return await self._tunnels.handle_dial(request, request_id)

    async def _handle_get(self, request: web.Request) -> web.StreamResponse:
        request_id = self._next_request_id()
        handler = self._rpc_routes.get(request.path)
        if handler is not None:
            rejection = self._check_websocket(request, request_id)
            if rejection is not None:
                return rejection
            try:
                return await handler(request)
            finally:
                logger.info(
                    "request %s from %s: WebSocket %s ended",
                    request_id,
                    request.remote,
                    request.path,
                )
        if self._site is None:
            raise web.HTTPNotFound(text="this relay serves no site\n")
        logger.debug(
            "request %s from %s: GET %s", request_id, request.remote, request.path
        )
        try:
            response = await self._site.handle(request, request_id)
        except web.HTTPMove as redirect:
            # A raised exception drops cookies set on it, so the redirect is
            # returned as a plain response.
            response = web.Response(
                status=redirect.status, headers={hdrs.LOCATION: str(redirect.location)}
            )
        self._set_token_cookie(request, request_id, response)
        return response

    def _set_token_cookie(
        self, request: web.Request, request_id: str, response: web.StreamResponse
    ) -> None:
        """Set the token cookie when the request's query contains the valid token."""
        presented = request.query.get(TOKEN_QUERY_PARAMETER)
        if presented is None or self._policy is None or self._token is None:
            return
        if not self._policy.is_valid_token(presented):
            logger.warning(
                "request %s from %s: GET %s with an invalid token; its WebSockets "
                "will be rejected, so open the URL that the relay printed",
                request_id,
                request.remote,
                request.path[:200],
            )
            return
        response.set_cookie(
            self.token_cookie_name,
            self._token,
            path="/",
            httponly=True,
            samesite="Strict",
        )
