"""Debugger addresses: ``host:port``, ``tcp://host:port``, ``ws://host:port/path``."""

from __future__ import annotations

from typing import NamedTuple
from urllib.parse import urlsplit

__all__ = ["DEFAULT_HOST", "DEFAULT_PORT", "Address", "parse_address"]

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 6831
"""The port am-dbg listens on by default, as asyncmachine-go's debugger does."""

_WS_DEFAULT_PORTS = {"ws": 80, "wss": 443}


class Address(NamedTuple):
    """A debugger's address: TCP, or a WebSocket URL.

    Attributes:
        host: the host name or IP address, without brackets.
        port: the TCP port.
        scheme: ``tcp``, ``ws`` or ``wss``.
        path: the URL path with its query, for ``ws`` and ``wss``; empty for tcp.
    """

    host: str
    port: int
    scheme: str = "tcp"
    path: str = ""

    @property
    def is_websocket(self) -> bool:
        """Whether telemetry goes over a WebSocket."""
        return self.scheme != "tcp"

    @property
    def url(self) -> str:
        """The full URL, e.g. ``ws://127.0.0.1:6832/dbg.ws``, or ``tcp://host:port``."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}{self.path}"

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        if self.scheme == "tcp":
            return f"{host}:{self.port}"
        # The query may carry a token and this text goes to logs.
        path = self.path.split("?", 1)[0]
        return f"{self.scheme}://{host}:{self.port}{path}"


def parse_address(text: str) -> Address:
    """Parse a debugger address.

    Accepts ``host:port``, ``tcp://host:port``, ``:port`` (the default host),
    ``[::1]:port``, ``1`` (the default address, 127.0.0.1:6831) and WebSocket
    URLs ``ws://host[:port]/path`` and ``wss://host[:port]/path`` (ports 80 and
    443 by default).

    Raises:
        ValueError: the address is invalid, or uses a scheme other than tcp, ws
            and wss.
    """
    value = text.strip()
    if value in ("1", "true", "yes"):
        return Address(DEFAULT_HOST, DEFAULT_PORT)
    if "://" in value:
        scheme = value.partition("://")[0].lower()
        if scheme in _WS_DEFAULT_PORTS:
            return _parse_websocket_url(text, value, scheme)
        if scheme != "tcp":
            raise ValueError(
                f"invalid debugger address {text!r}: scheme {scheme!r} is not "
                f"supported; use host:port, tcp://host:port or ws://host:port/path"
            )
        value = value.partition("://")[2].rstrip("/")
    host, sep, port_text = value.rpartition(":")
    if not sep:
        raise ValueError(
            f"invalid debugger address {text!r}: expected host:port, e.g. "
            f"{DEFAULT_HOST}:{DEFAULT_PORT}"
        )
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return Address(host or DEFAULT_HOST, _parse_port(text, port_text))


def _parse_port(text: str, port_text: str) -> int:
    try:
        port = int(port_text)
    except ValueError:
        port = -1
    if not 0 <= port <= 65535:
        raise ValueError(
            f"invalid debugger address {text!r}: the port must be a number "
            f"from 0 to 65535"
        )
    return port


def _parse_websocket_url(text: str, value: str, scheme: str) -> Address:
    parts = urlsplit(value)
    try:
        host = parts.hostname
        port = parts.port
    except ValueError:
        # urlsplit raises on a port that is not a number or out of range.
        port_text = parts.netloc.rpartition(":")[2]
        port = _parse_port(text, port_text)
        host = parts.hostname
    if not host:
        raise ValueError(
            f"invalid debugger address {text!r}: the WebSocket URL has no host, "
            f"expected {scheme}://host:port/path"
        )
    if parts.username is not None or parts.fragment:
        raise ValueError(
            f"invalid debugger address {text!r}: a WebSocket URL may not contain "
            f"credentials or a fragment"
        )
    path = parts.path or "/"
    if parts.query:
        path = f"{path}?{parts.query}"
    if port is None:
        port = _WS_DEFAULT_PORTS[scheme]
    return Address(host, port, scheme, path)
