"""REPL endpoints: one machine exposed to shells, scripts and stock rpyc clients.

An endpoint is an rpyc service over TCP, served on the running asyncio loop, for one
machine and any number of clients at once. Every exposed method takes and returns
values that rpyc passes by value (str, int, bool, None and tuples of these), so a
stock synchronous client works::

    endpoint = await expose_repl(mach, repl_dir="/tmp/am-repl")

    # in another process (or thread)
    conn = rpyc.connect("127.0.0.1", endpoint.port)
    conn.root.add("Foo", "Bar", msg="hi")  # 0 executed, 1 canceled, >= 2 queue tick
    conn.root.active()                     # ('Foo', 'Bar')

    await endpoint.close()

With ``repl_dir``, the endpoint writes ``<machine-id>.addr`` containing the bound
``host:port`` there. It removes the file on :meth:`ReplEndpoint.close`, on the
machine's disposal and at interpreter exit. An endpoint with a token (required for
addresses other than loopback) expects ``conn.root.auth(token)`` as a client's first
call, and every other call raises ``PermissionError`` until then.

Waits run on the machine, not by polling, so a state that is active only between
two polls is not missed. ``when_start`` registers a wait and returns its id. A
stock client reads the outcome with ``wait_result(wait_id)``. The am-repl shell
passes ``notify=True`` and gets the outcome pushed to its ``wait_done`` method over
the same connection. A handler of an rpyc request cannot await, so a single call
that blocks until the condition holds is not possible here.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import errno
import functools
import hmac
import itertools
import json
import logging
import os
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

import rpyc
from rpyc.core import brine

from .._errors import StateError
from .._machine import Machine
from ._driver import AsyncConnection, ConnectionOptions
from ._transport_tcp import TcpServer, is_loopback, serve_tcp

__all__ = [
    "ENV_REPL_ADDR",
    "ENV_REPL_DIR",
    "ENV_REPL_TOKEN",
    "MAX_WAITS_PER_CONNECTION",
    "WAIT_KINDS",
    "ReplEndpoint",
    "ReplService",
    "address_file_name",
    "expose_repl",
    "format_address",
    "maybe_expose_from_env",
    "parse_address",
]

logger = logging.getLogger("asyncmachine.repl")

ENV_REPL_DIR = "AM_REPL_DIR"
"""Directory where :func:`maybe_expose_from_env` writes address files."""

ENV_REPL_ADDR = "AM_REPL_ADDR"
"""Address to bind for :func:`maybe_expose_from_env`; empty or "1" is 127.0.0.1:0."""

ENV_REPL_TOKEN = "AM_REPL_TOKEN"
"""Token required from clients of endpoints exposed from the environment."""

WAIT_KINDS = ("when", "when_not", "when_time")
"""Kinds accepted by ``when_start``: the machine's ``when*`` methods of those names."""

MAX_WAITS_PER_CONNECTION = 1000
"""Waits one connection may have, pending or with an unread outcome.

``when_start`` raises RuntimeError beyond it.
"""

_DEFAULT_ADDR = "127.0.0.1:0"
# Bounds how long closing an endpoint waits to send the last wait results.
_DRAIN_SECONDS = 2.0
# Characters kept as they are in address file names. Others are %-encoded, so
# that a machine id such as "a/b" cannot name a file outside the directory.
_SAFE_NAME_CHARS = "-_.,+=@~"

# Address files of open endpoints, removed at interpreter exit when the loop
# stopped before the endpoints were closed. Maps the path to the text written.
_open_address_files: dict[Path, str] = {}
_open_address_files_lock = threading.Lock()

# Endpoints started by maybe_expose_from_env, kept alive until they close.
_env_endpoints: set[ReplEndpoint] = set()
_env_tasks: set[asyncio.Task[Any]] = set()


# -- addresses and address files ----------------------------------------------


def parse_address(addr: str) -> tuple[str, int]:
    """Split ``host:port`` (``[v6]:port`` for IPv6) into host and port.

    Raises:
        ValueError: The text is not ``host:port`` with a port from 0 to 65535.
    """
    text = addr.strip()
    host, sep, port_text = text.rpartition(":")
    if not sep or not host or not port_text.isdigit():
        raise ValueError(
            f"invalid address {addr!r}: expected HOST:PORT, e.g. 127.0.0.1:0"
        )
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    port = int(port_text)
    if port > 65535:
        raise ValueError(f"invalid address {addr!r}: port {port} is above 65535")
    return host, port


def format_address(host: str, port: int) -> str:
    """Join host and port as ``host:port``, bracketing IPv6 hosts."""
    if ":" in host:
        return f"[{host}]:{port}"
    return f"{host}:{port}"


def address_file_name(machine_id: str) -> str:
    """Return the address file name of a machine: ``<machine-id>.addr``.

    Characters other than letters, digits and ``-_.,+=@~`` are %-encoded, and a
    leading dot too, so that every id maps to one plain, visible file name.
    """
    name = quote(machine_id, safe=_SAFE_NAME_CHARS)
    if name.startswith("."):
        name = "%2E" + name[1:]
    return name + ".addr"


def _write_atomically(path: Path, text: str) -> None:
    """Write `text` so that a reader sees the old file or the whole new one."""
    fd, tmp_name = tempfile.mkstemp(prefix=".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as tmp:
            tmp.write(text)
        os.replace(tmp_name, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp_name)
        raise


def _remove_if_ours(path: Path, text: str) -> bool:
    """Remove `path` unless another endpoint replaced its content since."""
    try:
        if path.read_text(encoding="utf-8") != text:
            return False
        path.unlink()
    except FileNotFoundError:
        return False
    return True


@atexit.register
def _remove_open_address_files() -> None:
    with _open_address_files_lock:
        files = list(_open_address_files.items())
        _open_address_files.clear()
    for path, text in files:
        with contextlib.suppress(OSError):
            _remove_if_ours(path, text)


# -- the service ---------------------------------------------------------------


def _exposed(method: Callable[..., Any]) -> Callable[..., Any]:
    """Require authentication and report unknown states as ValueError.

    A client rebuilds builtin exceptions only, so StateError would reach it as a
    generic rpyc exception; ValueError keeps the message and a catchable class.
    """

    name = method.__name__.removeprefix("exposed_")

    @functools.wraps(method)
    def wrapper(self: ReplService, *args: Any, **kwargs: Any) -> Any:
        self._check_auth(name)
        try:
            return method(self, *args, **kwargs)
        except StateError as err:
            self._log_failure(name, err)
            raise ValueError(str(err)) from None
        except Exception as err:
            self._log_failure(name, err)
            raise

    return wrapper


def _permission_error(message: str) -> PermissionError:
    # rpyc 6.0.2 rebuilds an OSError on the client from its errno, strerror and
    # filename attributes, so the message must be the strerror to arrive. The
    # client's str() then reads "[Errno 13] <message>: None -> None".
    return PermissionError(errno.EACCES, message)


def _parse_states(states: tuple[Any, ...]) -> tuple[str, ...]:
    """Flatten positional states: names, or tuples of names."""
    names: list[str] = []
    for item in states:
        if type(item) is str:
            names.append(item)
        elif type(item) is tuple and all(type(name) is str for name in item):
            names.extend(item)
        else:
            raise TypeError(
                f"states must be names (str) or tuples of names, got "
                f"{type(item).__name__}; a list arrives as a remote reference, "
                f"so pass a tuple"
            )
    if not names:
        raise ValueError("no states given; name at least one state")
    return tuple(names)


def _json_value(name: str, value: Any) -> Any:
    """Return a by-value argument as a JSON-compatible value (tuples become lists)."""
    if value is None or type(value) in (bool, int, float, str):
        return value
    if type(value) is tuple:
        return [_json_value(name, item) for item in value]
    if not brine.dumpable(value):
        raise TypeError(
            f"argument {name!r} is a {type(value).__name__} passed by reference; "
            f"pass str, int, float, bool, None or tuples of these, or send a JSON "
            f"object with mutate(kind, states, args_json)"
        )
    raise TypeError(
        f"argument {name!r} is {type(value).__name__}, which is not "
        f"JSON-compatible; pass str, int, float, bool, None or tuples of these"
    )


def _parse_args_json(args_json: Any) -> dict[str, Any] | None:
    if args_json in (None, ""):
        return None
    if type(args_json) is not str:
        raise TypeError(f"args_json must be a str, got {type(args_json).__name__}")
    try:
        args = json.loads(args_json)
    except json.JSONDecodeError as err:
        raise ValueError(f"args_json is not valid JSON: {err}") from None
    if not isinstance(args, dict):
        raise ValueError(
            f"args_json must encode a JSON object, got {type(args).__name__}"
        )
    return args


class _WaitScope:
    """A context that never ends by itself, one per wait.

    The machine shares a pending waiter between callers with the same states and
    context. A scope of its own per wait lets one client cancel its wait without
    cancelling another client's.
    """

    __slots__ = ()

    def done(self) -> bool:
        return False


class _Wait:
    __slots__ = ("wait_id", "waiter", "scope", "notify", "outcome")

    def __init__(self, wait_id: int, notify: bool) -> None:
        self.wait_id = wait_id
        self.waiter: Any = None
        self.scope = _WaitScope()
        self.notify = notify
        self.outcome: tuple[str, tuple[int, ...]] | None = None


class ReplService(rpyc.Service):
    """The rpyc service of a REPL endpoint; one instance per connection.

    States are positional arguments (names, or tuples of names) and mutation args
    are keyword arguments with JSON-compatible by-value values. Unknown states
    raise ``ValueError``, arguments passed by reference raise ``TypeError``. When
    the endpoint has a token, every method but ``auth`` raises
    ``PermissionError`` until ``auth`` succeeded on the connection.
    """

    def __init__(self, endpoint: ReplEndpoint) -> None:
        self._endpoint = endpoint
        self._mach = endpoint.machine
        self._conn: AsyncConnection | None = None
        self._conn_id = "?"
        self._authenticated = endpoint._token is None
        self._failed_auths = 0
        self._waits: dict[int, _Wait] = {}
        self._wait_ids = itertools.count(1)
        self._loop = asyncio.get_running_loop()
        self._root_task: asyncio.Task[None] | None = None

    # -- connection lifecycle

    def on_connect(self, conn: Any) -> None:
        self._conn = conn
        self._conn_id = getattr(conn, "conn_id", "?")
        self._endpoint._services.add(self)
        logger.info(
            "repl %s: client connected on %s (%s)",
            self._mach.id,
            self._conn_id,
            getattr(conn, "peer", ""),
            extra={"mach_id": self._mach.id, "conn_id": self._conn_id},
        )

    def on_disconnect(self, conn: Any) -> None:
        self._endpoint._services.discard(self)
        pending = self.cancel_waits()
        logger.info(
            "repl %s: client on %s disconnected, %d pending waits cancelled",
            self._mach.id,
            self._conn_id,
            pending,
            extra={"mach_id": self._mach.id, "conn_id": self._conn_id},
        )

    async def drain_notifications(self, timeout: float) -> None:
        """Wait up to `timeout` seconds for this connection's queued notifications."""
        conn = self._conn
        if isinstance(conn, AsyncConnection) and not conn.closed:
            await conn.drain_notifications(timeout)

    def cancel_waits(self) -> int:
        """Cancel every pending wait of this connection; return how many."""
        waits = list(self._waits.values())
        self._waits.clear()
        count = 0
        for wait in waits:
            if wait.waiter is not None and not wait.waiter.done():
                wait.waiter.cancel()
                count += 1
        return count

    def _log_failure(self, name: str, err: Exception) -> None:
        # The client gets the exception; the log keeps the ids for debugging.
        logger.info(
            "repl %s: %s() from %s failed: %s: %s",
            self._mach.id,
            name,
            self._conn_id,
            type(err).__name__,
            err,
            extra={"mach_id": self._mach.id, "conn_id": self._conn_id},
        )

    def _check_auth(self, name: str) -> None:
        if self._authenticated or name == "auth":
            return
        raise _permission_error(
            f"REPL endpoint of machine {self._mach.id!r} requires a token: call "
            f"auth(token) before {name}()"
        )

    # -- authentication and rpyc's own exposed methods

    def exposed_auth(self, token: Any) -> bool:
        """Present the endpoint's token; return True, or raise PermissionError.

        An endpoint without a token accepts any value.
        """
        expected = self._endpoint._token
        if expected is None:
            self._authenticated = True
            return True
        if type(token) is str and hmac.compare_digest(
            token.encode("utf-8"), expected.encode("utf-8")
        ):
            self._authenticated = True
            return True
        self._failed_auths += 1
        logger.warning(
            "repl %s: wrong token on %s (failed attempt %d on this connection)",
            self._mach.id,
            self._conn_id,
            self._failed_auths,
            extra={"mach_id": self._mach.id, "conn_id": self._conn_id},
        )
        raise _permission_error(f"wrong token for machine {self._mach.id!r}")

    # rpyc.Service exposes these two without checks; gate them like the rest.
    @_exposed
    def exposed_get_service_name(self) -> str:
        return "REPL"

    @_exposed
    def exposed_get_service_aliases(self) -> tuple[str, ...]:
        return ("REPL",)

    # -- mutations

    def _mutate(self, kind: str, states: tuple[str, ...], args: Any) -> int:
        mach = self._mach
        if kind == "add":
            result = mach.add(states, args)
        elif kind == "remove":
            result = mach.remove(states, args)
        elif kind == "set":
            result = mach.set(states, args)
        else:
            raise ValueError(
                f"unknown mutation kind {kind!r}; expected add, remove or set"
            )
        return int(result)

    def _kwargs_to_args(self, kwargs: dict[str, Any]) -> dict[str, Any] | None:
        if not kwargs:
            return None
        return {name: _json_value(name, value) for name, value in kwargs.items()}

    @_exposed
    def exposed_add(self, *states: Any, **args: Any) -> int:
        """Add states; return 0 executed, 1 canceled, or the queue tick (>= 2)."""
        return self._mutate("add", _parse_states(states), self._kwargs_to_args(args))

    @_exposed
    def exposed_remove(self, *states: Any, **args: Any) -> int:
        """Remove states; the result is coded as for ``add``."""
        return self._mutate("remove", _parse_states(states), self._kwargs_to_args(args))

    @_exposed
    def exposed_set(self, *states: Any, **args: Any) -> int:
        """Set exactly these states; the result is coded as for ``add``."""
        return self._mutate("set", _parse_states(states), self._kwargs_to_args(args))

    @_exposed
    def exposed_mutate(self, kind: str, states: Any, args_json: str = "") -> int:
        """Run ``add``, ``remove`` or ``set`` with args given as a JSON object.

        For args that are not flat values, such as nested objects.
        """
        if type(states) is str:
            states = (states,)
        if type(states) is not tuple:
            raise TypeError(
                f"states must be a name or a tuple of names, "
                f"got {type(states).__name__}"
            )
        return self._mutate(kind, _parse_states(states), _parse_args_json(args_json))

    # -- views

    @_exposed
    def exposed_id(self) -> str:
        """Return the machine id."""
        return self._mach.id

    @_exposed
    def exposed_parent_id(self) -> str | None:
        """Return the parent machine's id, or None."""
        return self._mach.parent_id

    @_exposed
    def exposed_tags(self) -> tuple[str, ...]:
        """Return the machine's tags."""
        return tuple(self._mach.tags)

    @_exposed
    def exposed_states(self) -> tuple[str, ...]:
        """Return every state name, in state order."""
        return tuple(self._mach.state_names())

    @_exposed
    def exposed_active(self) -> tuple[str, ...]:
        """Return the active states, in state order."""
        return tuple(self._mach.active_states())

    @_exposed
    def exposed_is_active(self, *states: Any) -> bool:
        """Return whether all the states are active (unknown names are inactive)."""
        return bool(self._mach.is_active(*_parse_states(states)))

    @_exposed
    def exposed_clock(self) -> tuple[tuple[str, int], ...]:
        """Return ``(name, tick)`` pairs in state order."""
        return tuple(self._mach.clock().items())

    @_exposed
    def exposed_time(self) -> tuple[int, ...]:
        """Return the ticks in state order (empty after disposal)."""
        return tuple(self._mach.time())

    @_exposed
    def exposed_queue_tick(self) -> int:
        """Return the machine's queue tick."""
        return self._mach.queue_tick()

    @_exposed
    def exposed_string_all(self) -> str:
        """Return active then inactive states with ticks: ``(A:1) [B:0]``."""
        return self._mach.string_all()

    @_exposed
    def exposed_inspect(self) -> str:
        """Return every state with its tick, flags and relations."""
        return self._mach.inspect()

    @_exposed
    def exposed_describe(self) -> str:
        """Return id, parent id, tags, state names and schema as a JSON object.

        Tools call it once per connection, because :meth:`exposed_time` then
        returns the ticks in the order of ``states``.
        """
        mach = self._mach
        record = {
            "id": mach.id,
            "parent_id": mach.parent_id,
            "tags": list(mach.tags),
            "states": list(mach.state_names()),
            "schema": {name: state.to_dict() for name, state in mach.schema().items()},
            "disposed": mach.is_disposed(),
        }
        return json.dumps(record)

    # -- waits

    @_exposed
    def exposed_when_start(
        self, kind: str, states: Any, ticks: Any = (), notify: bool = False
    ) -> int:
        """Start a wait on the machine; return its id.

        Args:
            kind: ``when`` (all states active), ``when_not`` (all inactive) or
                ``when_time`` (each state's tick reaches the matching value of
                `ticks`).
            states: A state name or a tuple of names.
            ticks: For ``when_time``, a tuple of ints, one per state.
            notify: Push the outcome to the client's ``wait_done(wait_id,
                status, ticks)`` method, as the am-repl shell does, instead of
                keeping it for :meth:`exposed_wait_result`.

        Raises:
            ValueError: Unknown kind or state, or ticks that do not match states.
            RuntimeError: The connection has too many pending waits.
        """
        if type(states) is str:
            states = (states,)
        names = _parse_states(states if type(states) is tuple else (states,))
        if kind not in WAIT_KINDS:
            raise ValueError(
                f"unknown wait kind {kind!r}; expected one of {', '.join(WAIT_KINDS)}"
            )
        if len(self._waits) >= MAX_WAITS_PER_CONNECTION:
            raise RuntimeError(
                f"connection {self._conn_id} has {len(self._waits)} waits on machine "
                f"{self._mach.id!r} that are pending or whose outcome was not read; "
                f"read them with wait_result(wait_id) or cancel them with "
                f"wait_cancel(wait_id)"
            )
        mach = self._mach
        wait = _Wait(next(self._wait_ids), bool(notify))
        if notify:
            self._prefetch_client_root()
        if kind == "when_time":
            if type(ticks) is not tuple or any(type(t) is not int for t in ticks):
                raise TypeError("ticks must be a tuple of ints, one per state")
            if len(ticks) != len(names) or any(t < 0 for t in ticks):
                raise ValueError(
                    f"when_time needs one tick (>= 0) per state, got states "
                    f"{list(names)} and ticks {list(ticks)}"
                )
            for name in names:
                mach.tick(name)  # raises StateError for an unknown name
            waiter = mach.when_time(names, ticks, wait.scope)
        elif kind == "when":
            waiter = mach.when(names, wait.scope)
        else:
            waiter = mach.when_not(names, wait.scope)
        wait.waiter = waiter
        self._waits[wait.wait_id] = wait
        waiter.add_done_callback(lambda done: self._on_wait_resolved(wait, names, done))
        return wait.wait_id

    def _prefetch_client_root(self) -> None:
        """Fetch the client's root service now, for the notifications to come.

        A notification waits for that root, so one sent just before the endpoint
        closes (the machine was disposed) would be dropped without it.
        """
        conn = self._conn
        if self._root_task is not None or not isinstance(conn, AsyncConnection):
            return

        async def fetch() -> None:
            try:
                await conn.get_root()
            except Exception as err:
                logger.warning(
                    "repl %s: failed to fetch the root service of %s: %r",
                    self._mach.id,
                    self._conn_id,
                    err,
                    extra={"mach_id": self._mach.id, "conn_id": self._conn_id},
                )

        self._root_task = self._loop.create_task(fetch())

    def _on_wait_resolved(
        self, wait: _Wait, names: tuple[str, ...], waiter: Any
    ) -> None:
        # Runs in the thread that resolved the waiter, inside its transition, so
        # the ticks read here are those that satisfied the condition.
        if waiter.cancelled():
            return
        mach = self._mach
        ticks: tuple[int, ...] = ()
        if mach.is_disposed():
            # A disposed machine has no clock any more.
            status = "disposed"
        else:
            clock = mach.clock(names)
            status = "done"
            ticks = tuple(clock[name] for name in names)
        # Scheduled, so that a wait resolved inside when_start is reported after
        # its reply, and resolutions from other threads reach the loop's thread.
        with contextlib.suppress(RuntimeError):
            self._loop.call_soon_threadsafe(self._finish_wait, wait, status, ticks)

    def _finish_wait(self, wait: _Wait, status: str, ticks: tuple[int, ...]) -> None:
        if self._waits.get(wait.wait_id) is not wait:
            return
        wait.outcome = (status, ticks)
        if not wait.notify:
            return
        del self._waits[wait.wait_id]
        conn = self._conn
        if conn is None or conn.closed:
            return
        try:
            conn.notify("wait_done", wait.wait_id, status, ticks)
        except Exception as err:
            logger.warning(
                "repl %s: failed to notify %s of wait %d: %r",
                self._mach.id,
                self._conn_id,
                wait.wait_id,
                err,
                extra={"mach_id": self._mach.id, "conn_id": self._conn_id},
            )

    @_exposed
    def exposed_wait_result(self, wait_id: int) -> tuple[str, tuple[int, ...]] | None:
        """Return None while the wait is pending, then ``(status, ticks)`` once.

        `status` is ``done``, or ``disposed`` when the machine was disposed first;
        `ticks` are the ticks of the wait's states when it resolved. A returned
        outcome is forgotten.

        Raises:
            KeyError: No such wait on this connection (or its outcome was read).
        """
        wait = self._waits.get(wait_id)
        if wait is None:
            raise KeyError(f"no wait {wait_id!r} on connection {self._conn_id}")
        if wait.outcome is None:
            return None
        del self._waits[wait_id]
        return wait.outcome

    @_exposed
    def exposed_wait_cancel(self, wait_id: int) -> bool:
        """Cancel a wait; return whether it was still pending."""
        wait = self._waits.pop(wait_id, None)
        if wait is None or wait.waiter is None or wait.waiter.done():
            return False
        wait.waiter.cancel()
        return True


# -- the endpoint --------------------------------------------------------------


class ReplEndpoint:
    """A machine's REPL endpoint: a TCP server and, optionally, its address file.

    Create it with :func:`expose_repl`.
    """

    def __init__(self, machine: Machine, token: str | None) -> None:
        self.machine = machine
        self._token = token
        self._server: TcpServer | None = None
        self._services: set[ReplService] = set()
        self._address_file: Path | None = None
        self._address_text = ""
        self._loop = asyncio.get_running_loop()
        self._closing: asyncio.Task[None] | None = None
        self._closed_event = asyncio.Event()
        self._host = ""
        self._port = 0

    @property
    def host(self) -> str:
        """The bound host (kept after closing)."""
        return self._host

    @property
    def port(self) -> int:
        """The bound port (kept after closing)."""
        return self._port

    @property
    def address(self) -> str:
        """The bound address as ``host:port``, as written to the address file."""
        return format_address(self.host, self.port)

    @property
    def address_file(self) -> Path | None:
        """The address file written by this endpoint, or None."""
        return self._address_file

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` started."""
        return self._server is None

    @property
    def client_count(self) -> int:
        """Number of connected clients."""
        return len(self._services)

    async def _start(
        self, host: str, port: int, options: ConnectionOptions | None
    ) -> None:
        mach_id = self.machine.id
        try:
            self._server = await serve_tcp(
                lambda: ReplService(self), host, port, options=options
            )
        except OSError as err:
            if err.errno == errno.EADDRINUSE:
                raise OSError(
                    err.errno,
                    f"REPL endpoint of machine {mach_id!r}: address "
                    f"{format_address(host, port)} is already in use; pick another "
                    f"port, or port 0 for a free one",
                ) from err
            raise
        self._host = self._server.host
        self._port = self._server.port
        logger.info(
            "repl %s: listening on %s",
            mach_id,
            self.address,
            extra={"mach_id": mach_id},
        )

    def _write_address_file(self, repl_dir: str | os.PathLike[str]) -> None:
        directory = Path(repl_dir)
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / address_file_name(self.machine.id)
        text = self.address + "\n"
        _write_atomically(path, text)
        self._address_file = path
        self._address_text = text
        with _open_address_files_lock:
            _open_address_files[path] = text

    def _remove_address_file(self) -> None:
        path = self._address_file
        if path is None:
            return
        self._address_file = None
        with _open_address_files_lock:
            _open_address_files.pop(path, None)
        try:
            removed = _remove_if_ours(path, self._address_text)
        except OSError as err:
            logger.warning(
                "repl %s: failed to remove address file %s: %r",
                self.machine.id,
                path,
                err,
                extra={"mach_id": self.machine.id},
            )
            return
        if not removed:
            logger.info(
                "repl %s: address file %s was replaced or removed by someone else",
                self.machine.id,
                path,
                extra={"mach_id": self.machine.id},
            )

    def _on_machine_disposed(self, mach_id: str) -> None:
        # Called by Machine.dispose, possibly from another thread.
        if self._server is None:
            return
        self._remove_address_file()

        def start_close() -> None:
            if self._closing is None and self._server is not None:
                self._closing = self._loop.create_task(self.close())

        with contextlib.suppress(RuntimeError):
            self._loop.call_soon_threadsafe(start_close)

    async def close(self) -> None:
        """Remove the address file, cancel pending waits and stop serving."""
        server = self._server
        if server is None:
            return
        self._remove_address_file()
        services = list(self._services)
        for service in services:
            service.cancel_waits()
        self._server = None
        # Waits that the machine's disposal resolved are reported in
        # notifications, which may still wait for a client's root service.
        await asyncio.gather(
            *(service.drain_notifications(_DRAIN_SECONDS) for service in services)
        )
        try:
            await server.close()
        finally:
            _env_endpoints.discard(self)
            self._closed_event.set()
        logger.info(
            "repl %s: endpoint closed",
            self.machine.id,
            extra={"mach_id": self.machine.id},
        )

    async def wait_closed(self) -> None:
        """Wait until :meth:`close` finished, e.g. after the machine's disposal."""
        await self._closed_event.wait()

    async def __aenter__(self) -> ReplEndpoint:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    def __repr__(self) -> str:
        where = "closed" if self.closed else self.address
        return f"<ReplEndpoint {self.machine.id} {where}>"


async def expose_repl(
    mach: Machine,
    addr: str = _DEFAULT_ADDR,
    repl_dir: str | os.PathLike[str] | None = None,
    token: str | None = None,
    *,
    options: ConnectionOptions | None = None,
) -> ReplEndpoint:
    """Serve a REPL endpoint for `mach` on the running loop.

    Args:
        mach: The machine to expose.
        addr: ``host:port`` to bind; port 0 picks a free port.
        repl_dir: Directory for the address file ``<machine-id>.addr``; created
            when missing. None writes no file.
        token: Secret that clients present with ``auth(token)`` before any other
            call. Required when `addr` is not a loopback address.
        options: Limits and timeouts of the connections.

    Raises:
        ValueError: `addr` is invalid, or leaves loopback without a token.
        RuntimeError: The machine is disposed.
        OSError: The address cannot be bound, e.g. the port is in use.
    """
    host, port = parse_address(addr)
    if token is not None and (type(token) is not str or not token):
        raise ValueError("token must be a non-empty str or None")
    if token is None and not is_loopback(host):
        raise ValueError(
            f"binding the REPL endpoint of machine {mach.id!r} to {addr} exposes it "
            f"beyond this host; pass token=... (clients then call "
            f"conn.root.auth(token) first) or bind 127.0.0.1"
        )
    if mach.is_disposed():
        raise RuntimeError(f"machine {mach.id!r} is disposed; nothing to expose")
    endpoint = ReplEndpoint(mach, token)
    await endpoint._start(host, port, options)
    if repl_dir is not None:
        try:
            endpoint._write_address_file(repl_dir)
        except BaseException:
            await endpoint.close()
            raise
    mach.on_dispose(endpoint._on_machine_disposed)
    return endpoint


def maybe_expose_from_env(mach: Machine) -> asyncio.Task[Any] | None:
    """Expose `mach` when the ``AM_REPL_DIR`` environment variable is set.

    The endpoint starts as a task on the running loop, binds ``AM_REPL_ADDR``
    (default 127.0.0.1:0), requires ``AM_REPL_TOKEN`` when that is set, and
    writes its address file into ``AM_REPL_DIR``. It closes when the machine is
    disposed. Errors are logged, not raised.

    Returns:
        The task starting the endpoint, or None when the variable is not set or
        no loop is running (then a warning is logged).
    """
    repl_dir = os.environ.get(ENV_REPL_DIR, "").strip()
    if not repl_dir:
        return None
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        logger.warning(
            "%s is set, but machine %s was created without a running asyncio loop, "
            "so no REPL endpoint was started; create it inside a coroutine, or call "
            "'await asyncmachine.rpc.repl.expose_repl(mach)' later",
            ENV_REPL_DIR,
            mach.id,
            extra={"mach_id": mach.id},
        )
        return None
    addr = os.environ.get(ENV_REPL_ADDR, "").strip()
    if addr in ("", "1"):
        addr = _DEFAULT_ADDR
    token = os.environ.get(ENV_REPL_TOKEN) or None
    task = loop.create_task(
        _expose_and_log(mach, addr, repl_dir, token), name=f"repl-expose-{mach.id}"
    )
    _env_tasks.add(task)
    task.add_done_callback(_env_tasks.discard)
    return task


async def _expose_and_log(
    mach: Machine, addr: str, repl_dir: str, token: str | None
) -> ReplEndpoint | None:
    try:
        endpoint = await expose_repl(mach, addr, repl_dir, token)
    except (OSError, ValueError, RuntimeError) as err:
        logger.error(
            "repl %s: failed to expose from %s=%s: %s",
            mach.id,
            ENV_REPL_DIR,
            repl_dir,
            err,
            extra={"mach_id": mach.id},
        )
        return None
    _env_endpoints.add(endpoint)
    return endpoint
