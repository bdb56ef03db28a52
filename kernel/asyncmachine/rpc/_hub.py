"""The rpyc service at each end of a connection that carries sync sessions.

A :class:`Hub` routes by session key: ``source(key, data)`` carries a remote
mirror's requests to a local state source, and ``mirror(key, data)`` carries a
remote source's pushes to a local mirror. The key is chosen by the mirror's end
and is unique on its connection, so one connection carries several sessions each
way. Arguments and results are bytes encoded by :mod:`asyncmachine.rpc.wire`,
never references.
"""

from __future__ import annotations

import asyncio
import hmac
import itertools
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import rpyc
from rpyc.core import consts

from ._driver import AsyncConnection, CallTimeoutError, ConnectionClosedError
from ._wire import ErrorMessage, Hello, WireError, decode
from ._wire_binary import BINARY_TAGS, decode_binary
from ._wire_fields import MAX_NAME_LENGTH

if TYPE_CHECKING:
    from ._client import MirrorClient
    from ._peer import Peer
    from ._source_session import SourceSession

__all__ = ["MAX_SESSIONS_PER_CONNECTION", "Hub"]

logger = logging.getLogger("asyncmachine.rpc")

_Failure = Callable[[BaseException], None]

MAX_SESSIONS_PER_CONNECTION = 64
"""Source sessions one connection may open; more hellos are rejected."""

# Names of the hub's own methods. rpyc's Service also exposes these two, and stock
# clients may ask for them.
_HUB_METHODS = frozenset(
    {"source", "mirror", "auth", "get_service_name", "get_service_aliases"}
)
# The hub's methods that a plain service's methods of the same name never hide.
_OWN_METHODS = frozenset({"source", "mirror", "auth"})
_EXPOSED_PREFIX = "exposed_"


class Hub(rpyc.Service):
    """The rpyc service at one end of a connection carrying sync sessions.

    Exposed to the other end:

    - ``source(key, data) -> bytes | None``: a request of a remote mirror's
      session to a local source (a hello for an unknown key opens a session);
    - ``mirror(key, data) -> bytes | None``: a push of a remote source to a
      local mirror;
    - ``auth(token) -> bool``: unlocks the plain methods for stock rpyc clients
      when the peer has a token.

    The plain methods of the peer's plain service (see :class:`Peer`) are exposed
    too. Any other attribute is rejected. A request that cannot be decoded
    closes the connection, with the error logged under the connection's id.
    """

    def __init__(self, peer: Peer) -> None:
        self.peer = peer
        self.conn: AsyncConnection | None = None
        self._source_sessions: dict[str, SourceSession] = {}
        self._mirrors: dict[str, MirrorClient] = {}
        self._keys = itertools.count(1)
        # Our requests waiting for a reply: rpyc seq to (deadline, failure
        # callback). One timer, the sweeper, checks the deadlines.
        self._requests: dict[int, tuple[float | None, _Failure]] = {}
        self._sweeper: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._plain = peer._new_plain_face()
        self._plain_unlocked = peer.token is None

    def describe(self, key: str | None = None) -> str:
        """Return the connection id, and the session key if given, for logs."""
        conn_id = self.conn.conn_id if self.conn is not None else "no connection"
        if key is None:
            return f"connection {conn_id}"
        return f"session {key!r} on connection {conn_id}"

    def __repr__(self) -> str:
        return f"<Hub {self.describe()} of {self.peer!r}>"

    # -- rpyc lifecycle ----------------------------------------------------------------

    def on_connect(self, conn: Any) -> None:
        self.conn = conn
        self._loop = asyncio.get_running_loop()
        plain_on_connect = getattr(self._plain, "on_connect", None)
        if plain_on_connect is not None:
            plain_on_connect(conn)
        self.peer._on_hub_connect(self)

    def on_disconnect(self, conn: Any) -> None:
        for session in list(self._source_sessions.values()):
            session.connection_lost()
        self._source_sessions.clear()
        requests = list(self._requests.values())
        self._requests.clear()
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        reason = getattr(conn, "close_reason", None) or "closed"
        for _deadline, on_failure in requests:
            on_failure(ConnectionClosedError(f"{self.describe()} closed: {reason}"))
        plain_on_disconnect = getattr(self._plain, "on_disconnect", None)
        if plain_on_disconnect is not None:
            try:
                plain_on_disconnect(conn)
            except Exception:
                logger.exception(
                    "%s: the plain service's on_disconnect failed", self.describe()
                )
        self.peer._on_hub_disconnect(self)

    # -- attribute access --------------------------------------------------------------

    def _rpyc_getattr(self, name: str) -> Any:
        # rpyc calls this for every attribute a peer reads or calls, and skips
        # its own access checks when it exists, so everything is checked here.
        if type(name) is not str:
            raise AttributeError("attribute names must be str")
        base = name.removeprefix(_EXPOSED_PREFIX)
        plain = self._plain
        if base in _HUB_METHODS and (
            base in _OWN_METHODS or not hasattr(plain, _EXPOSED_PREFIX + base)
        ):
            return getattr(self, _EXPOSED_PREFIX + base)
        if plain is not None and base and not base.startswith("_"):
            method = getattr(plain, _EXPOSED_PREFIX + base, None)
            if method is not None:
                if not self._plain_unlocked:
                    raise PermissionError(
                        f"{base}() needs the token: call auth(token) first"
                    )
                return method
        raise AttributeError(f"cannot access {name!r}")

    # -- requests from the other end (inside rpyc's dispatch) --------------------------

    def exposed_source(self, key: Any, data: Any) -> bytes | None:
        """Handle a remote mirror's request to a local source."""
        message = self._decode_request(key, data)
        if message is None:
            return None
        session = self._source_sessions.get(key)
        if session is not None:
            return self._handle_request(session, key, message)
        if not isinstance(message, Hello):
            logger.warning(
                "%s: %s request before a hello",
                self.describe(key),
                type(message).__name__,
            )
            return ErrorMessage(
                "unknown_session",
                f"no session {key!r} on this connection; send a hello first",
            ).encode()
        return self._open_session(key, message)

    def _handle_request(
        self, session: SourceSession, key: str, message: Any
    ) -> bytes | None:
        try:
            return session.handle(message)
        except WireError as err:
            self._reject(f"invalid request for {self.describe(key)}: {err}")
            return None
        except Exception as err:
            logger.exception(
                "%s: request %s failed", self.describe(key), type(message).__name__
            )
            return ErrorMessage(
                "internal_error", f"{type(err).__name__}: {err}"
            ).encode()

    def _open_session(self, key: str, message: Hello) -> bytes:
        source = self.peer._find_source(message.source_id)
        if source is None:
            logger.warning(
                "%s: hello of %r for unknown source %r",
                self.describe(key),
                message.machine_id,
                message.source_id,
            )
            return ErrorMessage(
                "not_found",
                f"no source {message.source_id!r} here; offered: "
                f"{sorted(self.peer._sources)}",
            ).encode()
        if len(self._source_sessions) >= MAX_SESSIONS_PER_CONNECTION:
            logger.warning(
                "%s: hello of %r rejected, %d sessions open on this connection",
                self.describe(key),
                message.machine_id,
                MAX_SESSIONS_PER_CONNECTION,
            )
            return ErrorMessage(
                "too_many_sessions",
                f"this connection already carries {MAX_SESSIONS_PER_CONNECTION} "
                "sessions",
            ).encode()
        session, reply = source.open_session(self, key, message)
        if session is not None:
            self._source_sessions[key] = session
        return reply

    def exposed_mirror(self, key: Any, data: Any) -> bytes | None:
        """Handle a remote source's push to a local mirror."""
        client = self._mirrors.get(key) if type(key) is str else None
        if client is None:
            logger.debug("%s: push for no mirror, dropped", self.describe(str(key)))
            return None
        if type(data) is not bytes:
            client.on_invalid_push(
                WireError("push", type(data).__name__, "expected bytes")
            )
            return None
        try:
            message = decode(data)
        except WireError as err:
            client.on_invalid_push(err)
            return None
        return client.on_push(message)

    def exposed_auth(self, token: Any) -> bool:
        """Unlock the plain methods with the peer's token; return True.

        Raises:
            PermissionError: The token is wrong.
        """
        expected = self.peer.token
        if expected is not None and not (
            type(token) is str
            and hmac.compare_digest(token.encode("utf-8"), expected.encode("utf-8"))
        ):
            logger.warning("%s: auth with an invalid token", self.describe())
            raise PermissionError(f"wrong token for {self.peer.name or 'this peer'}")
        self._plain_unlocked = True
        plain_auth = getattr(self._plain, "exposed_auth", None)
        if plain_auth is not None:
            plain_auth(token)
        return True

    def _decode_request(self, key: Any, data: Any) -> Any:
        if type(key) is not str or not key or len(key) > MAX_NAME_LENGTH:
            self._reject(f"invalid session key {str(key)[:40]!r}")
            return None
        if type(data) is not bytes:
            self._reject(
                f"request for {self.describe(key)} is a {type(data).__name__}, "
                "expected bytes"
            )
            return None
        try:
            if data[:1] in BINARY_TAGS:
                return decode_binary(data)
            return decode(data)
        except WireError as err:
            self._reject(f"invalid request for {self.describe(key)}: {err}")
            return None

    def _reject(self, reason: str) -> None:
        """Close the connection because the other end sent something invalid."""
        if self.conn is not None:
            self.conn.abort(reason)
        else:
            logger.error("%s: %s", self.describe(), reason)

    # -- our requests to the other end -------------------------------------------------

    def new_key(self) -> str:
        """Return a session key not used by local mirrors on this connection."""
        return str(next(self._keys))

    def register_mirror(self, key: str, client: MirrorClient) -> None:
        """Route the pushes for session `key` to a local mirror."""
        self._mirrors[key] = client

    def forget_mirror(self, key: str, client: MirrorClient) -> None:
        """Stop routing pushes of session `key` to `client`."""
        if self._mirrors.get(key) is client:
            del self._mirrors[key]

    def _forget_source_session(self, key: str, session: SourceSession) -> None:
        if self._source_sessions.get(key) is session:
            del self._source_sessions[key]

    def send_request(
        self,
        key: str,
        data: bytes,
        on_reply: Callable[[bool, Any], None],
        on_failure: _Failure,
        timeout: float | None,
    ) -> None:
        """Send a request to the remote source of session `key`.

        ``on_reply(is_error, value)`` runs when the reply is dispatched, in order
        with the pushes that arrive on the connection, so a clock diff in a
        reply is applied before any later push. It also runs for a reply that
        arrives after the timeout. ``on_failure(err)`` runs at most once, with
        :class:`CallTimeoutError` when no reply came within `timeout` seconds,
        or with :class:`ConnectionClosedError` when the connection closed first
        (also at once, when it is closed already).
        """
        conn = self.conn
        if conn is None or conn.closed:
            on_failure(ConnectionClosedError(f"{self.describe()} is closed"))
            return
        requests = self._requests

        def reply(is_error: bool, value: Any) -> None:
            requests.pop(seq, None)
            try:
                on_reply(is_error, value)
            except Exception:
                # An error raised into rpyc's dispatch would close the
                # connection.
                logger.exception("%s: handling a reply failed", self.describe(key))

        try:
            seq = _send_request(conn, "source", (key, data), reply)
        except ConnectionClosedError as err:
            on_failure(err)
            return
        loop = self._loop
        if timeout is None or loop is None:
            requests[seq] = (None, on_failure)
            return
        deadline = loop.time() + timeout
        requests[seq] = (deadline, on_failure)
        if self._sweeper is None:
            self._sweeper = loop.call_at(deadline, self._sweep)

    def _sweep(self) -> None:
        """Fail the requests past their deadline; wait for the next deadline."""
        self._sweeper = None
        loop = self._loop
        if loop is None:
            return
        now = loop.time()
        expired = [
            seq
            for seq, (deadline, _) in self._requests.items()
            if deadline is not None and deadline <= now
        ]
        for seq in expired:
            _deadline, on_failure = self._requests.pop(seq)
            on_failure(
                CallTimeoutError(f"request {seq} on {self.describe()} timed out")
            )
        deadlines = [d for d, _ in self._requests.values() if d is not None]
        if deadlines:
            self._sweeper = loop.call_at(min(deadlines), self._sweep)

    def request(
        self,
        key: str,
        data: bytes,
        handler: Callable[[bool, Any], Any],
        timeout: float | None,
    ) -> asyncio.Future[Any]:
        """Send a request like :meth:`send_request`; return a future of its result.

        ``handler(is_error, value)`` runs when the reply is dispatched; the
        future gets what it returns or raises. It gets
        :class:`CallTimeoutError` or :class:`ConnectionClosedError` when the
        request fails.
        """
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()

        def on_reply(is_error: bool, value: Any) -> None:
            try:
                result = handler(is_error, value)
            except Exception as err:
                if not future.done():
                    future.set_exception(err)
                return
            if not future.done():
                future.set_result(result)

        def on_failure(err: BaseException) -> None:
            if not future.done():
                future.set_exception(err)

        self.send_request(key, data, on_reply, on_failure, timeout)
        return future

    def notify(self, key: str, data: bytes) -> None:
        """Send a request to the remote source of session `key`, without a reply.

        Raises:
            ConnectionClosedError: The connection is closed.
        """
        conn = self.conn
        if conn is None or conn.closed:
            raise ConnectionClosedError(f"{self.describe()} is closed")
        conn.notify("source", key, data)


def _send_request(
    conn: AsyncConnection,
    name: str,
    args: tuple[Any, ...],
    on_reply: Callable[[bool, Any], None],
) -> int:
    """Send a call whose reply runs `on_reply` at dispatch time; return its seq.

    ``AsyncConnection.call`` resolves its future only on a later loop iteration,
    after which pushes dispatched in between would already have run.
    """
    # TODO: the driver has no public API for a reply callback run at dispatch
    # time; this uses AsyncConnection._send_request and the cached root until it
    # does.
    root = conn._remote_root
    if root is None:
        raise ConnectionClosedError(
            f"connection {conn.conn_id} has no root of the peer yet; "
            "await conn.get_root() first"
        )
    return conn._send_request(consts.HANDLE_CALLATTR, (root, name, args, ()), on_reply)
