"""Debugger addresses: ``host:port``, ``tcp://host:port`` or ``1`` for the default."""

from __future__ import annotations

from typing import NamedTuple

__all__ = ["DEFAULT_HOST", "DEFAULT_PORT", "Address", "parse_address"]

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 6831
"""The port am-dbg listens on by default, as asyncmachine-go's debugger does."""


class Address(NamedTuple):
    """A debugger's TCP address."""

    host: str
    port: int

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


def parse_address(text: str) -> Address:
    """Parse a debugger address.

    Accepts ``host:port``, ``tcp://host:port``, ``:port`` (the default host),
    ``[::1]:port`` and ``1`` (the default address, 127.0.0.1:6831).

    Raises:
        ValueError: the address is invalid, or uses a scheme other than tcp.
    """
    value = text.strip()
    if value in ("1", "true", "yes"):
        return Address(DEFAULT_HOST, DEFAULT_PORT)
    if "://" in value:
        scheme, _, value = value.partition("://")
        if scheme != "tcp":
            # TODO: WebSocket URLs (ws://host:port/dbg.ws) for browser telemetry,
            # over rpc.connect_ws, once the collector serves WebSockets.
            raise ValueError(
                f"invalid debugger address {text!r}: scheme {scheme!r} is not "
                f"supported; use host:port or tcp://host:port"
            )
        value = value.rstrip("/")
    host, sep, port_text = value.rpartition(":")
    if not sep:
        raise ValueError(
            f"invalid debugger address {text!r}: expected host:port, e.g. "
            f"{DEFAULT_HOST}:{DEFAULT_PORT}"
        )
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    try:
        port = int(port_text)
    except ValueError:
        port = -1
    if not 0 <= port <= 65535:
        raise ValueError(
            f"invalid debugger address {text!r}: the port must be a number "
            f"from 0 to 65535"
        )
    return Address(host or DEFAULT_HOST, port)
