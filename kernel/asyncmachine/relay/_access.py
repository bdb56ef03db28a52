"""Origin and token checks for WebSocket upgrades, and the token cookie.

Any web page the user visits may open a WebSocket to 127.0.0.1 and the browser
only adds an ``Origin`` header, because WebSockets are not subject to CORS. The
relay therefore checks the Origin of every upgrade and requires the page's token.

A Jupyter kernel runs in a Web Worker, which cannot read the page's URL and so
cannot see the token in its query. When the relay serves a page requested with
a valid ``?token=``, it sets the token as a cookie (``HttpOnly``,
``SameSite=Strict``, ``Path=/``). The browser then adds it to every same-origin
request, the worker's WebSocket handshakes included, and never to requests that
other sites start.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Collection

from aiohttp import hdrs, web

__all__ = [
    "TOKEN_COOKIE_PREFIX",
    "TOKEN_QUERY_PARAMETER",
    "AccessPolicy",
    "reject",
    "token_cookie_name",
]

logger = logging.getLogger("asyncmachine.relay")

TOKEN_QUERY_PARAMETER = "token"
"""Query parameter that carries the token (browsers cannot set WebSocket headers)."""

TOKEN_COOKIE_PREFIX = "am_relay_token_"
"""Start of the token cookie's name; the relay's port follows it."""

_BEARER_PREFIX = "bearer "


def token_cookie_name(port: int) -> str:
    """Return the name of the token cookie of the relay on `port`.

    Browsers send a cookie of 127.0.0.1 to every port of that host, so the name
    carries the port and relays on other ports never receive this token.
    """
    return f"{TOKEN_COOKIE_PREFIX}{port}"


class AccessPolicy:
    """Decides whether a WebSocket upgrade request may proceed.

    Args:
        token: The shared secret, or None to accept requests without one.
        allowed_origins: Exact ``Origin`` header values that are accepted, e.g.
            ``"http://127.0.0.1:12733"``.
        allow_no_origin: Whether requests without an ``Origin`` header are
            accepted. Browsers always send one, so only other clients omit it.
        cookie_name: Name of the cookie that may carry the token, or None to
            accept the token only in the query or an ``Authorization`` header.
    """

    def __init__(
        self,
        token: str | None,
        allowed_origins: Collection[str],
        *,
        allow_no_origin: bool,
        cookie_name: str | None = None,
    ) -> None:
        self._token = None if token is None else token.encode()
        self.allowed_origins = frozenset(allowed_origins)
        self.allow_no_origin = allow_no_origin
        self.cookie_name = cookie_name

    def is_valid_token(self, presented: str | None) -> bool:
        """Return whether `presented` is the token; False when no token is set."""
        if self._token is None or presented is None:
            return False
        return hmac.compare_digest(presented.encode(), self._token)

    def rejection_reason(self, request: web.Request) -> str | None:
        """Return why the request is rejected, or None when it may proceed.

        The reason is short and never contains the token.
        """
        origin = request.headers.get(hdrs.ORIGIN)
        if origin is None:
            if not self.allow_no_origin:
                return "Origin header missing"
        elif origin not in self.allowed_origins:
            return f"origin {origin[:200]!r} not allowed"

        if self._token is None:
            return None
        presented = _presented_token(request, self.cookie_name)
        if presented is None:
            return "token missing"
        if not self.is_valid_token(presented):
            return "token invalid"
        return None


def _presented_token(request: web.Request, cookie_name: str | None) -> str | None:
    """Return the token from the query, the Authorization header or the cookie.

    The first place that has one wins, so an explicit token overrides a cookie
    left by an earlier run with another token.
    """
    token = request.query.get(TOKEN_QUERY_PARAMETER)
    if token is not None:
        return token
    authorization = request.headers.get(hdrs.AUTHORIZATION, "")
    if authorization.lower().startswith(_BEARER_PREFIX):
        return authorization[len(_BEARER_PREFIX) :].strip()
    if cookie_name is not None:
        return request.cookies.get(cookie_name)
    return None


def reject(
    request: web.Request, request_id: str, status: int, reason: str
) -> web.Response:
    """Log a rejected request with its id and remote address; return the response.

    The response body is the short reason. Neither the body nor the log line
    contains the token, because the log shows the path without its query string.
    """
    logger.warning(
        "request %s from %s to %s rejected with %d: %s",
        request_id,
        request.remote,
        request.path[:200],
        status,
        reason,
    )
    return web.Response(status=status, text=f"{reason}\n")
