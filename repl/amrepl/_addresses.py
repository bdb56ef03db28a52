"""Endpoint addresses: parsing, address files, and polling them for changes."""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote

__all__ = [
    "Address",
    "AddressEntry",
    "AddressError",
    "AddressWatcher",
    "command_line_entries",
    "parse_address",
    "read_directory",
    "read_file",
    "require_directory",
]

logger = logging.getLogger("asyncmachine.repl")

ADDRESS_SUFFIX = ".addr"


class AddressError(ValueError):
    """An address, an address file or a directory of them is invalid."""


@dataclass(frozen=True)
class Address:
    """The address an endpoint listens on.

    Attributes:
        host: Host name or IP address (IPv6 without brackets).
        port: TCP port.
        ws_path: For a WebSocket endpoint, its URL path (at least ``/``); None
            for plain TCP.
    """

    host: str
    port: int
    ws_path: str | None = None

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        text = f"{host}:{self.port}"
        if self.ws_path is not None:
            text += self.ws_path
        return text

    @property
    def ws_url(self) -> str:
        """The ``ws://`` URL of a WebSocket endpoint."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"ws://{host}:{self.port}{self.ws_path or '/'}"


@dataclass(frozen=True)
class AddressEntry:
    """One address to connect to, and where it came from.

    Attributes:
        key: Identity of the entry across rescans: the file path and line, or
            the address text given on the command line.
        address: The parsed address.
        origin: The address file, or None for a command-line address.
        hint_id: The machine id that the file name suggests, for messages
            about machines that never connected.
    """

    key: str
    address: Address
    origin: str | None = None
    hint_id: str | None = None


def parse_address(text: str) -> Address:
    """Parse ``host:port``, ``[v6]:port`` or ``host:port/path`` (a WebSocket).

    Everything from the first ``/`` after the port is the WebSocket path, so a
    trailing ``/`` means a WebSocket at ``/``.

    Raises:
        AddressError: The text is not such an address.
    """
    raw = text.strip()
    hostport, slash, path = raw.partition("/")
    ws_path = "/" + path if slash else None
    host, sep, port_text = hostport.rpartition(":")
    if not sep or not host or not port_text.isdigit():
        raise AddressError(
            f"invalid address {text.strip()!r}: expected HOST:PORT (TCP) or "
            f"HOST:PORT/PATH (WebSocket)"
        )
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    port = int(port_text)
    if not 0 < port <= 65535:
        raise AddressError(f"invalid address {raw!r}: port must be 1 to 65535")
    return Address(host, port, ws_path)


def _hint_from_name(path: Path) -> str | None:
    if path.name.endswith(ADDRESS_SUFFIX):
        return unquote(path.name[: -len(ADDRESS_SUFFIX)])
    return None


def read_file(path: str | os.PathLike[str]) -> list[AddressEntry]:
    """Read addresses from a file: one per line, ``#`` starts a comment.

    Raises:
        AddressError: The file cannot be read, or a line is not an address.
    """
    file_path = Path(path)
    try:
        text = file_path.read_text(encoding="utf-8")
    except OSError as err:
        raise AddressError(f"cannot read address file {file_path}: {err}") from None
    entries = []
    hint = _hint_from_name(file_path)
    for number, line in enumerate(text.splitlines(), 1):
        content = line.split("#", 1)[0].strip()
        if not content:
            continue
        try:
            address = parse_address(content)
        except AddressError as err:
            raise AddressError(f"{file_path}:{number}: {err}") from None
        key = str(file_path) if number == 1 else f"{file_path}:{number}"
        entries.append(AddressEntry(key, address, str(file_path), hint))
    return entries


def require_directory(path: str | os.PathLike[str]) -> Path:
    """Return `path` as a Path when it is a directory.

    Raises:
        AddressError: It does not exist or is not a directory. The message
            includes the next step.
    """
    directory = Path(path)
    if directory.is_dir():
        return directory
    if directory.exists():
        raise AddressError(
            f"address directory {directory} is not a directory "
            "(use -f FILE for a file of addresses)"
        )
    raise AddressError(
        f"address directory {directory} does not exist. Servers create it when "
        "they write their address files (*.addr), so start the server first or "
        "check the path (am-demo prints its directory at start)."
    )


def read_directory(
    path: str | os.PathLike[str],
) -> tuple[list[AddressEntry], list[str]]:
    """Read every ``*.addr`` file under a directory, recursively.

    A file being written or removed meanwhile, or holding no valid address, is
    skipped and reported rather than failing the whole scan.

    Returns:
        The entries, sorted by file path, and one message per skipped file.

    Raises:
        AddressError: The directory is missing, is not a directory, or cannot
            be listed.
    """
    directory = require_directory(path)
    entries: list[AddressEntry] = []
    problems: list[str] = []
    try:
        files = sorted(directory.rglob("*" + ADDRESS_SUFFIX))
    except OSError as err:
        raise AddressError(
            f"cannot list address directory {directory}: {err}"
        ) from None
    for file_path in files:
        if file_path.name.startswith(".") or not file_path.is_file():
            continue
        try:
            found = read_file(file_path)
        except AddressError as err:
            problems.append(str(err))
            continue
        if not found:
            problems.append(f"address file {file_path} is empty")
        entries.extend(found)
    return entries, problems


def command_line_entries(addresses: Iterable[str]) -> list[AddressEntry]:
    """Parse addresses given as arguments.

    Raises:
        AddressError: One of them is invalid.
    """
    return [AddressEntry(text, parse_address(text)) for text in addresses]


class AddressWatcher:
    """Polls an address file or directory and reports each new set of entries.

    Polling works the same on every platform and file system, network mounts
    included; the cost is one directory listing per interval.

    Args:
        read: Reads the current entries and the problems found.
        apply: Called with the entries whenever they differ from the last call.
        report: Called with each new problem message (repeats are not reported
            again until the problem goes away).
        interval: Seconds between polls.
    """

    def __init__(
        self,
        read: Callable[[], tuple[list[AddressEntry], list[str]]],
        apply: Callable[[list[AddressEntry]], Awaitable[None]],
        report: Callable[[str], None],
        interval: float,
    ) -> None:
        self._read = read
        self._apply = apply
        self._report = report
        self._interval = interval
        self._last: list[AddressEntry] | None = None
        self._problems: set[str] = set()

    async def poll_once(self) -> None:
        """Read the entries once and apply them when they changed."""
        try:
            entries, problems = await asyncio.to_thread(self._read)
        except AddressError as err:
            entries, problems = [], [str(err)]
        for problem in problems:
            if problem not in self._problems:
                self._report(problem)
        self._problems = set(problems)
        if entries != self._last:
            self._last = entries
            await self._apply(entries)

    async def run(self) -> None:
        """Poll until cancelled."""
        while True:
            try:
                await self.poll_once()
            except asyncio.CancelledError:
                raise
            except Exception as err:
                logger.exception("address watcher failed: %r", err)
            await asyncio.sleep(self._interval)
