"""Origin and token checks for WebSocket upgrades.

Any web page the user visits may open a WebSocket to 127.0.0.1 and the browser
only adds an ``Origin`` header, because WebSockets are not subject to CORS. The
relay therefore checks the Origin of every upgrade and requires the page's token.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Collection

from aiohttp import hdrs, web

__all__ = ["TOKEN_QUERY_PARAMETER", "AccessPolicy", "reject"]

logger = logging.getLogger("asyncmachine.relay")

TOKEN_QUERY_PARAMETER = "token"
"""Query parameter that carries the token (browsers cannot set WebSocket headers)."""

_BEARER_PREFIX = "bearer "


class AccessPolicy:
    """Decides whether a WebSocket upgrade request may proceed.

    Args:
        token: The shared secret, or None to accept requests without one.
        allowed_origins: Exact ``Origin`` header values that are accepted, e.g.
            ``"http://127.0.0.1:12733"``.
        allow_no_origin: Whether requests without an ``Origin`` header are
            accepted. Browsers always send one, so only other clients omit it.
    """

    def __init__(
        self,
        token: str | None,
        allowed_origins: Collection[str],
        *,
        allow_no_origin: bool,
    ) -> None:
        self._token = None if token is None else token.encode()
        self.allowed_origins = frozenset(allowed_origins)
        self.allow_no_origin = allow_no_origin

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
        presented = _presented_token(request)
        if presented is None:
            return "token missing"
        if not hmac.compare_digest(presented.encode(), self._token):
            return "token invalid"
        return None


def _presented_token(request: web.Request) -> str | None:
    token = request.query.get(TOKEN_QUERY_PARAMETER)
    if token is not None:
        return token
    authorization = request.headers.get(hdrs.AUTHORIZATION, "")
    if authorization.lower().startswith(_BEARER_PREFIX):
        return authorization[len(_BEARER_PREFIX) :].strip()
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
