"""Connections to REPL endpoints: one link per address, reconnected on loss."""

from __future__ import annotations

import asyncio
import contextlib
import enum
import json
import logging
from collections.abc import Callable, Iterable
from typing import Any

import rpyc

from asyncmachine import rpc

from ._addresses import AddressEntry

__all__ = [
    "LinkStatus",
    "MachineLink",
    "NotConnectedError",
    "Pool",
    "WaitTimeoutError",
]

logger = logging.getLogger("asyncmachine.repl")

# Reconnect delays in seconds: doubled after each failed attempt, up to the max.
_RECONNECT_MIN = 0.5
_RECONNECT_MAX = 10.0


class LinkStatus(enum.Enum):
    """Connection state of one endpoint."""

    CONNECTING = "connecting"
    CONNECTED = "connected"
    DISCONNECTED = "disconnected"


class NotConnectedError(ConnectionError):
    """The endpoint of a machine is not connected."""


class WaitTimeoutError(TimeoutError):
    """A wait did not resolve within its timeout."""


def describe_error(err: BaseException) -> str:
    """Return a short, plain description of a connection error."""
    if isinstance(err, ConnectionRefusedError):
        return "connection refused"
    if isinstance(err, TimeoutError):
        return str(err) or "timed out"
    if isinstance(err, PermissionError):
        # rpyc rebuilds remote OSErrors around strerror, which contains the message.
        return f"authentication failed: {err.strerror or err}"
    text = str(err)
    return f"{type(err).__name__}: {text}" if text else type(err).__name__


class _LinkService(rpyc.Service):
    """The service the shell exposes to an endpoint, which pushes wait outcomes."""

    def __init__(self, link: MachineLink) -> None:
        self._link = link

    def exposed_wait_done(self, wait_id: Any, status: Any, ticks: Any) -> None:
        if type(wait_id) is int and type(status) is str and type(ticks) is tuple:
            self._link._wait_done(wait_id, status, ticks)


class MachineLink:
    """The connection to one endpoint and what is known about its machine.

    Attributes:
        entry: The address and where it came from.
        status: Current connection state.
        ever_connected: Whether a connection ever succeeded (only then are the
            machine id and schema known).
        mach_id: The machine id reported by the endpoint.
        parent_id: The machine's parent id, or None.
        tags: The machine's tags.
        names: State names in state order.
        schema: State name to its fields (``multi``, ``auto``, relations).
        time: Last fetched ticks, in the order of `names`.
        error: Why the last connection attempt failed or the connection ended.
        conn_id: Id of the current (or last) connection, for logs.
    """

    def __init__(self, entry: AddressEntry, pool: Pool) -> None:
        self.entry = entry
        self.pool = pool
        self.status = LinkStatus.CONNECTING
        self.ever_connected = False
        self.mach_id: str | None = None
        self.parent_id: str | None = None
        self.tags: tuple[str, ...] = ()
        self.names: tuple[str, ...] = ()
        self.schema: dict[str, dict[str, Any]] = {}
        self.time: tuple[int, ...] | None = None
        self.error: str | None = None
        self.conn_id: str | None = None
        self._conn: rpc.AsyncConnection | None = None
        self._waits: dict[int, asyncio.Future[tuple[str, tuple[int, ...]]]] = {}
        self._early: dict[int, tuple[str, tuple[int, ...]]] = {}
        self._task: asyncio.Task[None] | None = None
        self._retry_now = asyncio.Event()
        self._closed = False
        self.first_attempt = asyncio.Event()

    # -- identity

    @property
    def label(self) -> str:
        """The machine id, else the id the address file suggests, else the address."""
        return self.mach_id or self.entry.hint_id or str(self.entry.address)

    @property
    def where(self) -> str:
        """The address, with the address file when there is one."""
        if self.entry.origin:
            return f"{self.entry.address} from {self.entry.origin}"
        return str(self.entry.address)

    @property
    def connected(self) -> bool:
        """Whether the link is connected now."""
        return self.status is LinkStatus.CONNECTED

    def __repr__(self) -> str:
        return f"<MachineLink {self.label} {self.entry.address} {self.status.value}>"

    # -- connecting

    def start(self) -> None:
        """Start connecting in a task, which reconnects when `pool.reconnect` is set."""
        self._task = asyncio.get_running_loop().create_task(
            self._run(), name=f"am-repl-link-{self.entry.address}"
        )

    def retry_now(self) -> None:
        """Skip the current reconnect delay."""
        self._retry_now.set()

    async def _open(self) -> rpc.AsyncConnection:
        address = self.entry.address
        service = _LinkService(self)
        options = self.pool.options
        timeout = self.pool.connect_timeout
        if address.ws_path is not None:
            # NOTE: no test covers this path, because no WebSocket REPL endpoint
            # exists yet; the relay is expected to write such addresses.
            return await rpc.connect_ws(
                address.ws_url, service, options=options, connect_timeout=timeout
            )
        return await rpc.connect_tcp(
            address.host,
            address.port,
            service,
            options=options,
            connect_timeout=timeout,
        )

    async def _connect_once(self) -> bool:
        self.status = LinkStatus.CONNECTING
        try:
            conn = await self._open()
        except (OSError, TimeoutError) as err:
            self._attempt_failed(err)
            return False
        except Exception as err:  # aiohttp errors for WebSocket endpoints
            self._attempt_failed(err)
            return False

        try:
            if self.pool.token is not None:
                await conn.call("auth", self.pool.token)
            record = json.loads(await conn.call("describe"))
            time = await conn.call("time")
        except Exception as err:
            await conn.aclose()
            self._attempt_failed(err)
            return False

        self._conn = conn
        self.conn_id = conn.conn_id
        self._apply_description(record)
        self.time = tuple(time)
        self.status = LinkStatus.CONNECTED
        self.ever_connected = True
        self.error = None
        logger.info(
            "connected to %s at %s on %s",
            self.mach_id,
            self.entry.address,
            self.conn_id,
            extra={"mach_id": self.mach_id, "conn_id": self.conn_id},
        )
        self.pool._emit(
            f"connected {self.mach_id} at {self.entry.address} ({self.conn_id})"
        )
        return True

    def _attempt_failed(self, err: BaseException) -> None:
        reason = describe_error(err)
        first_failure = self.error != reason
        self.error = reason
        self.status = LinkStatus.DISCONNECTED
        logger.info(
            "connecting to %s at %s failed: %s",
            self.label,
            self.entry.address,
            reason,
            extra={"mach_id": self.mach_id},
        )
        # The same error on every retry is reported once.
        if first_failure:
            self.pool._emit(f"cannot connect to {self.where}: {reason}", error=True)

    def _apply_description(self, record: dict[str, Any]) -> None:
        self.mach_id = str(record["id"])
        self.parent_id = record.get("parent_id")
        self.tags = tuple(record.get("tags") or ())
        self.names = tuple(record["states"])
        self.schema = dict(record.get("schema") or {})

    async def _run(self) -> None:
        delay = _RECONNECT_MIN
        try:
            while not self._closed:
                connected = await self._connect_once()
                self.first_attempt.set()
                if connected:
                    delay = _RECONNECT_MIN
                    await self._watch_connection()
                if self._closed or not self.pool.reconnect:
                    return
                self._retry_now.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._retry_now.wait(), delay)
                delay = min(delay * 2, _RECONNECT_MAX)
        finally:
            self.first_attempt.set()

    async def _watch_connection(self) -> None:
        conn = self._conn
        assert conn is not None
        await conn.wait_closed()
        self._conn = None
        reason = conn.close_reason or "closed"
        self.status = LinkStatus.DISCONNECTED
        self.error = reason
        self._fail_waits(rpc.ConnectionClosedError(f"disconnected: {reason}"))
        if self._closed:
            return
        logger.info(
            "disconnected from %s on %s: %s",
            self.mach_id,
            self.conn_id,
            reason,
            extra={"mach_id": self.mach_id, "conn_id": self.conn_id},
        )
        self.pool._emit(
            f"disconnected {self.mach_id} at {self.entry.address} "
            f"({self.conn_id}): {reason}",
            error=True,
        )

    async def close(self) -> None:
        """Disconnect for good."""
        self._closed = True
        self._retry_now.set()
        conn = self._conn
        if conn is not None:
            await conn.aclose()
        task = self._task
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._fail_waits(rpc.ConnectionClosedError("the shell closed the link"))
        self.status = LinkStatus.DISCONNECTED

    # -- calls

    def _require_conn(self) -> rpc.AsyncConnection:
        conn = self._conn
        if conn is None or self.status is not LinkStatus.CONNECTED:
            reason = f": {self.error}" if self.error else ""
            raise NotConnectedError(
                f"machine {self.label} at {self.entry.address} is not connected{reason}"
            )
        return conn

    async def call(self, name: str, *args: Any, timeout: Any = None) -> Any:
        """Call an endpoint method; the default timeout is the pool's.

        Raises:
            NotConnectedError: The link is not connected.
            rpc.CallTimeoutError, rpc.ConnectionClosedError: The call failed.
        """
        conn = self._require_conn()
        return await conn.call(
            name, *args, timeout=self.pool.call_timeout if timeout is None else timeout
        )

    async def refresh(self) -> tuple[int, ...]:
        """Fetch the machine's ticks, and its description when the schema changed."""
        time = tuple(await self.call("time"))
        if len(time) != len(self.names):
            self._apply_description(json.loads(await self.call("describe")))
            time = tuple(await self.call("time"))
        self.time = time
        return time

    async def mutate(
        self, kind: str, states: Iterable[str], args: dict[str, Any] | None
    ) -> int:
        """Run add, remove or set on the machine; return the result code."""
        args_json = json.dumps(args) if args else ""
        return int(await self.call("mutate", kind, tuple(states), args_json))

    async def wait(
        self,
        kind: str,
        states: tuple[str, ...],
        ticks: tuple[int, ...] = (),
        timeout: float | None = None,
    ) -> tuple[str, tuple[int, ...]]:
        """Wait on the machine until a ``when*`` condition holds.

        Returns:
            The status (``done`` or ``disposed``) and the states' ticks.

        Raises:
            WaitTimeoutError: Not resolved within `timeout` seconds; the wait is
                cancelled on the endpoint.
            rpc.ConnectionClosedError: The connection ended first.
        """
        wait_id = await self.call("when_start", kind, states, ticks, True)
        future: asyncio.Future[tuple[str, tuple[int, ...]]]
        future = asyncio.get_running_loop().create_future()
        early = self._early.pop(wait_id, None)
        if early is not None:
            future.set_result(early)
        else:
            self._waits[wait_id] = future
        try:
            return await asyncio.wait_for(future, timeout)
        except TimeoutError:
            self._cancel_remote(wait_id)
            raise WaitTimeoutError(
                f"{kind.replace('_', '-')} {self.label} {' '.join(states)} "
                f"timed out after {timeout:g} s"
            ) from None
        except asyncio.CancelledError:
            self._cancel_remote(wait_id)
            raise
        finally:
            self._waits.pop(wait_id, None)

    def _cancel_remote(self, wait_id: int) -> None:
        conn = self._conn
        if conn is not None and not conn.closed:
            with contextlib.suppress(Exception):
                conn.notify("wait_cancel", wait_id)

    def _wait_done(self, wait_id: int, status: str, ticks: tuple[int, ...]) -> None:
        future = self._waits.pop(wait_id, None)
        if future is None:
            self._early[wait_id] = (status, ticks)
        elif not future.done():
            future.set_result((status, ticks))

    def _fail_waits(self, err: BaseException) -> None:
        waits = list(self._waits.values())
        self._waits.clear()
        self._early.clear()
        for future in waits:
            if not future.done():
                future.set_exception(err)


class Pool:
    """The links to every endpoint of the shell.

    Args:
        token: Token presented to every endpoint, or None.
        connect_timeout: Seconds allowed for one connection attempt.
        call_timeout: Seconds a call may take.
        reconnect: Reconnect lost and failed links with growing delays (the
            shell); the CLI mode makes one attempt.
        on_event: Called with a message and whether it is an error, for
            connection changes.
    """

    def __init__(
        self,
        *,
        token: str | None = None,
        connect_timeout: float = 3.0,
        call_timeout: float = 10.0,
        reconnect: bool = True,
        on_event: Callable[[str, bool], None] | None = None,
    ) -> None:
        self.token = token
        self.connect_timeout = connect_timeout
        self.call_timeout = call_timeout
        self.reconnect = reconnect
        self.options = rpc.ConnectionOptions(call_timeout=call_timeout)
        self._on_event = on_event
        self._links: dict[str, MachineLink] = {}

    def _emit(self, message: str, error: bool = False) -> None:
        if self._on_event is not None:
            self._on_event(message, error)

    @property
    def links(self) -> list[MachineLink]:
        """Every link, in address order."""
        return list(self._links.values())

    async def apply(self, entries: list[AddressEntry]) -> None:
        """Connect new entries, drop missing ones, reconnect changed ones."""
        entries_by_key = {entry.key: entry for entry in entries}
        for key, link in list(self._links.items()):
            entry = entries_by_key.get(key)
            if entry == link.entry:
                continue
            del self._links[key]
            await link.close()
            if entry is None:
                reason = "address file removed" if link.entry.origin else "removed"
                self._emit(f"removed {link.label} at {link.entry.address} ({reason})")
            else:
                self._emit(
                    f"address of {link.label} changed from {link.entry.address} "
                    f"to {entry.address}"
                )
        for key, entry in entries_by_key.items():
            if key not in self._links:
                link = MachineLink(entry, self)
                self._links[key] = link
                link.start()

    async def wait_first_attempts(self) -> None:
        """Wait until every link made its first connection attempt."""
        for link in list(self._links.values()):
            await link.first_attempt.wait()

    def retry_now(self) -> None:
        """Make disconnected links try again at once."""
        for link in self._links.values():
            if not link.connected:
                link.retry_now()

    def known(self) -> list[MachineLink]:
        """Links whose machine is known (connected at least once), by machine id."""
        found = [link for link in self._links.values() if link.ever_connected]
        return sorted(
            found, key=lambda link: (link.mach_id or "", str(link.entry.address))
        )

    def connected(self) -> list[MachineLink]:
        """Connected links, by machine id."""
        return [link for link in self.known() if link.connected]

    def counts(self) -> dict[str, int]:
        """Number of links per status, and the total."""
        counts = {status.value: 0 for status in LinkStatus}
        for link in self._links.values():
            counts[link.status.value] += 1
        counts["total"] = len(self._links)
        return counts

    async def close(self) -> None:
        """Close every link."""
        links = list(self._links.values())
        self._links.clear()
        await asyncio.gather(*(link.close() for link in links))
