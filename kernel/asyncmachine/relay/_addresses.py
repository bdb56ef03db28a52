"""TCP addresses, address allowlists and machine ids as the relay accepts them.

Addresses are written ``HOST:PORT``, with IPv6 hosts in brackets
(``[::1]:0``). When listening, port 0 lets the operating system pick a free port.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

__all__ = [
    "AddressAllowlist",
    "format_address",
    "parse_address",
    "validate_machine_id",
]

# Machine ids become file names (<machine-id>.addr), so they must not contain a
# path separator or start with a dot.
_MACHINE_ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")


def parse_address(text: str) -> tuple[str, int]:
    """Split ``HOST:PORT`` into a lowercase host and a port number.

    Raises:
        ValueError: The text is not ``HOST:PORT`` with a port from 0 to 65535.
    """
    host, separator, port_text = text.strip().rpartition(":")
    if not separator or not host or not port_text.isdigit():
        raise ValueError(f"invalid address {text!r}: expected HOST:PORT")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not host or any(char in host for char in "/[] "):
        raise ValueError(f"invalid host in address {text!r}")
    port = int(port_text)
    if port > 65535:
        raise ValueError(f"invalid port in address {text!r}: {port} exceeds 65535")
    return host.lower(), port


def format_address(host: str, port: int) -> str:
    """Join a host and a port as ``HOST:PORT``, bracketing IPv6 hosts."""
    if ":" in host:
        return f"[{host}]:{port}"
    return f"{host}:{port}"


def validate_machine_id(machine_id: str) -> None:
    """Raise ValueError unless the id is safe to use as a file name.

    An id is 1 to 128 characters: ASCII letters, digits, ``_``, ``.`` and ``-``,
    starting with a letter or a digit.
    """
    if not _MACHINE_ID_PATTERN.fullmatch(machine_id):
        raise ValueError(
            f"invalid machine id {machine_id[:140]!r}: use 1 to 128 letters, digits, "
            "'_', '.' or '-', starting with a letter or a digit"
        )


class AddressAllowlist:
    """A set of ``HOST:PORT`` addresses; an address matches only an equal entry.

    Hosts are compared as written (lowercase), so ``localhost:80`` does not
    match ``127.0.0.1:80``. Port 0 in an entry matches only a request for
    port 0, which means "any free port" when listening.

    Raises:
        ValueError: An entry is not a valid address.
    """

    def __init__(self, entries: Iterable[str]) -> None:
        self._entries = frozenset(parse_address(entry) for entry in entries)

    def __contains__(self, address: object) -> bool:
        if not isinstance(address, tuple):
            return False
        return address in self._entries

    def __bool__(self) -> bool:
        return bool(self._entries)

    def __repr__(self) -> str:
        entries = sorted(format_address(host, port) for host, port in self._entries)
        return f"AddressAllowlist({entries!r})"
