"""Awaitable rpyc connections fed by pushed bytes.

This is the only module of asyncmachine that touches rpyc internals, and it is
written against rpyc 6.0.x (checked at import). A transport pushes received bytes
into an :class:`AsyncConnection`, which reassembles rpyc frames and dispatches them
from an asyncio loop callback. Outgoing frames go to a writer task that awaits the
transport. Nothing ever blocks the loop, so the same code runs in CPython
and in Pyodide, with or without JSPI.

Synchronous rpyc use (``conn.root.method(...)``, ``AsyncResult.value``,
``conn.serve()``) raises :class:`SyncRequestError` on these connections, in CPython
too: a blocking wait on the loop's thread would stop the loop that delivers the
reply. Stock synchronous rpyc clients still work against our servers, because they
block on their own side.

Usage::

    conn = await connect_tcp("127.0.0.1", port, MyService())
    total = await conn.call("add", 1, 2, timeout=5)
    conn.notify("log", "fire and forget")
    await conn.aclose()
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import threading
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Protocol

from rpyc.core import brine, consts, netref
from rpyc.core.protocol import Connection
from rpyc.core.service import Service, VoidService
from rpyc.version import __version__ as _rpyc_version

from ._framing import FrameDecoder, FrameError, FrameTooLargeError, encode_frame

__all__ = [
    "DEFAULT_CALL_TIMEOUT",
    "DEFAULT_CLOSE_TIMEOUT",
    "DEFAULT_CONNECT_TIMEOUT",
    "DEFAULT_MAX_FRAME_SIZE",
    "SAFE_RPYC_CONFIG",
    "AsyncConnection",
    "CallTimeoutError",
    "ConnectionClosedError",
    "ConnectionOptions",
    "SyncRequestError",
    "Transport",
    "resolve_service",
]

if _rpyc_version.split(".")[:2] != ["6", "0"]:
    raise ImportError(
        "asyncmachine.rpc drives rpyc through private parts of rpyc 6.0.x, but rpyc "
        f"{_rpyc_version} is installed; install rpyc==6.0.2"
    )

logger = logging.getLogger("asyncmachine.rpc")

DEFAULT_MAX_FRAME_SIZE = 1 << 20
"""Largest rpyc frame payload accepted or sent, in bytes (1 MiB)."""

DEFAULT_CALL_TIMEOUT = 30.0
"""Seconds an awaitable call waits for its reply (rpyc's own sync default)."""

DEFAULT_CONNECT_TIMEOUT = 10.0
"""Seconds allowed for opening a connection and fetching the peer's root."""

DEFAULT_CLOSE_TIMEOUT = 5.0
"""Seconds a graceful close waits for queued output before aborting."""

SAFE_RPYC_CONFIG: Mapping[str, Any] = MappingProxyType(
    {
        # Only names with the exposed_ prefix are reachable. rpyc's default also
        # allows a list of "safe" dunder attributes, which includes __new__.
        "allow_safe_attrs": False,
        "allow_exposed_attrs": True,
        "allow_public_attrs": False,
        "allow_all_attrs": False,
        "allow_getattr": True,
        "allow_setattr": False,
        "allow_delattr": False,
        "allow_pickle": False,
        "import_custom_exceptions": False,
        "instantiate_custom_exceptions": False,
        "instantiate_oldstyle_exceptions": False,
        # A traceback would show any peer our file paths, and the version our
        # rpyc release.
        "include_local_traceback": False,
        "include_local_version": False,
        "propagate_SystemExit_locally": False,
        "propagate_KeyboardInterrupt_locally": True,
        # Thread binding adds a 16-byte prefix to every message, which this driver
        # does not implement.
        "bind_threads": False,
    }
)
"""rpyc settings applied to every connection unless overridden."""

# Frames dispatched in one loop callback before yielding to other tasks.
_FRAMES_PER_CALLBACK = 64
# Upper size of one transport write when queued frames are coalesced.
_MAX_WRITE_CHUNK = 256 * 1024

_connection_numbers = itertools.count(1)
_DEFAULT = object()


class ConnectionClosedError(ConnectionError, EOFError):
    """The connection is closed, or closed before a request got its reply."""


class CallTimeoutError(TimeoutError):
    """A call got no reply within its timeout."""


class SyncRequestError(RuntimeError):
    """A blocking rpyc request was attempted on an asyncio-driven connection."""


class Transport(Protocol):
    """Byte pipe under one :class:`AsyncConnection`.

    The transport's reader pushes received bytes with :meth:`AsyncConnection.feed`
    or :meth:`AsyncConnection.receive` and reports the end of the stream with
    :meth:`AsyncConnection.feed_eof`.
    """

    async def write(self, data: bytes) -> None:
        """Send bytes, waiting while the peer is slow to read them."""

    async def close(self, *, abort: bool = False) -> None:
        """Close after sending what was written, or at once when abort is set.

        An abort discards unsent bytes and must not wait for the peer.
        """


@dataclass(frozen=True)
class ConnectionOptions:
    """Limits, timeouts and rpyc settings of a connection.

    Attributes:
        max_frame_size: Largest frame payload in bytes, checked on both received
            frames (after decompression) and sent ones. A peer that sends a larger
            frame is disconnected.
        call_timeout: Default timeout of :meth:`AsyncConnection.call` in seconds,
            or None to wait for ever.
        close_timeout: Seconds a graceful close waits for queued output before
            aborting the transport.
        compress: Whether outgoing frames above 3000 bytes are zlib-compressed,
            as rpyc does.
        rpyc_config: rpyc settings applied over :data:`SAFE_RPYC_CONFIG`.
    """

    max_frame_size: int = DEFAULT_MAX_FRAME_SIZE
    call_timeout: float | None = DEFAULT_CALL_TIMEOUT
    close_timeout: float = DEFAULT_CLOSE_TIMEOUT
    compress: bool = True
    rpyc_config: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if type(self.max_frame_size) is not int or self.max_frame_size < 64:
            raise ValueError(
                f"max_frame_size must be an int of at least 64 bytes, "
                f"got {self.max_frame_size!r}"
            )
        if self.call_timeout is not None and not self.call_timeout > 0:
            raise ValueError(f"call_timeout must be positive, got {self.call_timeout}")
        if not self.close_timeout > 0:
            raise ValueError(
                f"close_timeout must be positive, got {self.close_timeout}"
            )
        if self.rpyc_config.get("bind_threads"):
            raise ValueError("rpyc_config bind_threads=True is not supported")


def resolve_service(service: Any) -> Service:
    """Return the rpyc service instance to expose on one connection.

    Args:
        service: None (expose nothing), a :class:`rpyc.Service` instance (shared
            by every connection), or a class or factory called once per
            connection.

    Raises:
        TypeError: The value or the factory's result is not a Service.
    """
    if service is None:
        return VoidService()
    if isinstance(service, Service):
        return service
    if callable(service):
        instance = service()
        if isinstance(instance, Service):
            return instance
        raise TypeError(
            f"service factory {service!r} returned {type(instance).__name__}, "
            "expected an rpyc.Service instance"
        )
    raise TypeError(
        f"service must be an rpyc.Service, a Service class or a factory, "
        f"got {type(service).__name__}"
    )


class _ConnectionLog(logging.LoggerAdapter[logging.Logger]):
    """Prefixes records with the connection id and stores it as ``conn_id``."""

    def __init__(self, base: logging.Logger, conn_id: str) -> None:
        super().__init__(base, {"conn_id": conn_id})
        self.conn_id = conn_id

    def process(self, msg: Any, kwargs: Any) -> tuple[Any, Any]:
        kwargs.setdefault("extra", {})["conn_id"] = self.conn_id
        return f"connection {self.conn_id}: {msg}", kwargs


class _PushChannel:
    """rpyc's Channel interface over the connection's outgoing queue.

    rpyc calls :meth:`send` for every message. Receiving never goes through the
    channel: the connection dispatches frames it decoded itself.
    """

    __slots__ = ("_conn", "closed")

    def __init__(self, conn: AsyncConnection) -> None:
        self._conn = conn
        self.closed = False

    def send(self, data: bytes) -> None:
        if self.closed:
            raise ConnectionClosedError(
                f"connection {self._conn.conn_id} is closed: {self._conn.close_reason}"
            )
        options = self._conn.options
        frame = encode_frame(
            data, max_frame_size=options.max_frame_size, compress=options.compress
        )
        self._conn._queue_output(frame)

    def close(self) -> None:
        self.closed = True
        self._conn._wake_writer()

    def fileno(self) -> int:
        raise OSError("an asyncio-driven rpyc channel has no file descriptor")

    def poll(self, timeout: Any) -> bool:
        return False

    def recv(self) -> bytes:
        raise SyncRequestError("an asyncio-driven rpyc channel is never read directly")


class AsyncConnection(Connection):
    """An rpyc connection dispatched on an asyncio loop.

    Create it through a transport (:func:`connect_tcp`, :func:`serve_tcp`,
    :func:`connect_ws`, ...). Both ends expose a service, so one connection
    carries calls in both directions. Every method must be called on the loop's
    thread, except :meth:`close`, which may be called from any thread.

    Args:
        service: The local service (see :func:`resolve_service`).
        transport: The byte pipe to the peer.
        options: Limits and timeouts; the defaults when None.
        kind: Short transport name used in the connection id, e.g. ``"tcp"``.
        peer: Description of the peer for logs, e.g. its address.
    """

    def __init__(
        self,
        service: Any,
        transport: Transport,
        *,
        options: ConnectionOptions | None = None,
        kind: str = "conn",
        peer: str = "",
    ) -> None:
        # Attributes used by close() and __del__ exist before rpyc's __init__ runs.
        self._driver_ready = False
        self.options = options or ConnectionOptions()
        self.peer = peer
        self.close_reason: str | None = None
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        self._transport = transport
        self._decoder = FrameDecoder(self.options.max_frame_size)
        self._received: deque[bytes] = deque()
        self._frames: deque[bytes] = deque()
        self._processing_scheduled = False
        self._eof: BaseException | None = None
        self._backlog_empty = asyncio.Event()
        self._backlog_empty.set()
        self._output: deque[bytes] = deque()
        self._output_ready = asyncio.Event()
        self._abort_output = False
        self._pending: dict[int, asyncio.Future[Any]] = {}
        self._root_future: asyncio.Future[Any] | None = None
        self._notify_backlog: deque[tuple[str, tuple[Any, ...]]] = deque()
        self._notify_task: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._finished = False
        self._finished_event = asyncio.Event()

        conn_id = f"{kind}-{next(_connection_numbers)}"
        self._log = _ConnectionLog(logger, conn_id)
        config = dict(SAFE_RPYC_CONFIG)
        config.update(self.options.rpyc_config)
        config["connid"] = conn_id
        config["logger"] = self._log
        local_service = resolve_service(service)
        super().__init__(local_service, _PushChannel(self), config)
        self._writer_task = self._loop.create_task(
            self._run_writer(), name=f"rpc-writer-{conn_id}"
        )
        self._driver_ready = True
        self._log.info("opened (%s)", peer or "no peer address")
        try:
            local_service.on_connect(self)
        except Exception as exc:
            self.abort(f"the local service's on_connect failed: {exc!r}")
            raise

    # -- identity and state -------------------------------------------------

    @property
    def conn_id(self) -> str:
        """The connection id used in logs and errors, e.g. ``tcp-3``."""
        return self._config["connid"]

    @property
    def root(self) -> Any:
        """The peer's root service once :meth:`get_root` fetched it.

        Raises:
            SyncRequestError: The root was not fetched yet, because fetching it
                here would need a blocking request.
        """
        if self._remote_root is None:
            raise SyncRequestError(
                f"connection {self.conn_id}: the peer's root is not fetched yet; "
                "use 'await conn.get_root()' or 'await conn.call(name, ...)'"
            )
        return self._remote_root

    # -- receiving ----------------------------------------------------------

    def feed(self, data: bytes) -> None:
        """Queue bytes received from the transport.

        Only queues and schedules a loop callback, so it is safe to call from a
        JavaScript event handler in Pyodide. Bytes arriving after the connection
        closed are dropped.
        """
        if self._finished or not data:
            return
        self._received.append(bytes(data))
        self._backlog_empty.clear()
        self._schedule_processing()

    async def receive(self, data: bytes) -> None:
        """Queue received bytes and wait until they are dispatched.

        Transports that read in a loop use this instead of :meth:`feed`, so that
        they stop reading while the connection is behind.
        """
        self.feed(data)
        await self._backlog_empty.wait()

    def feed_eof(self, error: BaseException | None = None) -> None:
        """Report the end of the received stream, with its cause if known.

        Frames received before it are dispatched first; then the connection
        closes and pending calls fail with :class:`ConnectionClosedError`.
        """
        if self._finished or self._eof is not None:
            return
        self._eof = error or EOFError("the peer closed the stream")
        self._schedule_processing()

    def abort(self, reason: str) -> None:
        """Close at once because of a protocol error, discarding queued output.

        The reason is logged as an error with the connection id.
        """
        if self._finished:
            return
        self._log.error("closing: %s", reason)
        self.close_reason = reason
        self._abort_output = True
        self._cleanup()

    def _schedule_processing(self) -> None:
        if not self._processing_scheduled:
            self._processing_scheduled = True
            self._loop.call_soon(self._process_received)

    def _process_received(self) -> None:
        self._processing_scheduled = False
        if self._finished:
            return
        while self._received:
            chunk = self._received.popleft()
            try:
                self._frames.extend(self._decoder.feed(chunk))
            except FrameError as exc:
                self.abort(f"invalid frame from the peer: {exc}")
                return

        for _ in range(_FRAMES_PER_CALLBACK):
            if not self._frames or self._finished:
                break
            frame = self._frames.popleft()
            try:
                self._dispatch_frame(frame)
            except Exception as exc:
                if self._finished:
                    # A close request from the peer ends the connection while its
                    # own reply is being sent.
                    self._log.debug("frame dispatched after close: %r", exc)
                else:
                    self.abort(f"failed to dispatch a frame from the peer: {exc!r}")
                return

        if self._finished:
            return
        if self._frames:
            self._schedule_processing()
            return
        self._backlog_empty.set()
        if self._eof is not None:
            self._on_stream_end(self._eof)

    def _dispatch_frame(self, payload: bytes) -> None:
        # rpyc's _dispatch releases the receive lock that its own serve() takes
        # before dispatching, so take it here the same way.
        self._recvlock.acquire()
        try:
            self._dispatch(payload)
        except BaseException:
            # The lock is still held when the frame failed before rpyc released
            # it, and already released otherwise.
            with contextlib.suppress(RuntimeError):
                self._recvlock.release()
            raise

    def _on_stream_end(self, error: BaseException) -> None:
        if self._decoder.buffered:
            reason = (
                f"connection lost in the middle of a frame "
                f"({self._decoder.buffered} bytes buffered): {error!r}"
            )
        elif type(error) is EOFError:
            reason = "the peer closed the stream"
        else:
            reason = f"connection lost: {error!r}"
        self._log.info("%s", reason)
        self.close_reason = reason
        self._abort_output = True
        self._cleanup()

    # -- sending ------------------------------------------------------------

    def _send(self, msg: int, seq: int, args: Any) -> None:
        try:
            super()._send(msg, seq, args)
        except FrameTooLargeError as exc:
            if msg != consts.MSG_REPLY:
                raise
            # A reply over the limit becomes an error for the caller instead of
            # a frame the peer would reject by closing the connection.
            self._log.warning("reply to request %d not sent: %s", seq, exc)
            error = self._box_exc(FrameTooLargeError, exc, exc.__traceback__)
            super()._send(consts.MSG_EXCEPTION, seq, error)

    def _queue_output(self, frame: bytes) -> None:
        if threading.get_ident() == self._loop_thread:
            self._output.append(frame)
            self._output_ready.set()
            return
        # rpyc may send from another thread, e.g. a netref's __del__ run by the
        # garbage collector there.
        self._loop.call_soon_threadsafe(self._queue_output, frame)

    def _wake_writer(self) -> None:
        if threading.get_ident() == self._loop_thread:
            self._output_ready.set()
        else:
            self._loop.call_soon_threadsafe(self._output_ready.set)

    def _take_output_chunk(self) -> bytes:
        parts = [self._output.popleft()]
        size = len(parts[0])
        while self._output and size + len(self._output[0]) <= _MAX_WRITE_CHUNK:
            frame = self._output.popleft()
            parts.append(frame)
            size += len(frame)
        return b"".join(parts)

    async def _run_writer(self) -> None:
        try:
            while not self._abort_output:
                if self._output:
                    await self._transport.write(self._take_output_chunk())
                    continue
                if self._finished:
                    break
                self._output_ready.clear()
                await self._output_ready.wait()
        except asyncio.CancelledError:
            # wait_closed cancels a writer stuck on a peer that stopped reading.
            await self._close_transport(abort=True)
            raise
        except Exception as exc:
            if not self._finished:
                self._log.warning("write failed: %r", exc)
                self.close_reason = f"write failed: {exc!r}"
                self._abort_output = True
                self._cleanup()
        await self._close_transport(abort=self._abort_output)

    async def _close_transport(self, *, abort: bool) -> None:
        try:
            await self._transport.close(abort=abort)
        except Exception as exc:
            self._log.debug("transport close failed: %r", exc)

    # -- requests -----------------------------------------------------------

    def _check_loop(self) -> None:
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is not self._loop:
            raise RuntimeError(
                f"connection {self.conn_id} belongs to another event loop; "
                "await its calls on the loop that created it"
            )

    def _closed_error(self) -> ConnectionClosedError:
        return ConnectionClosedError(
            f"connection {self.conn_id} is closed: {self.close_reason}"
        )

    def _send_request(
        self, handler: int, args: tuple[Any, ...], on_reply: Callable[[bool, Any], None]
    ) -> int:
        if self._finished:
            raise self._closed_error()
        seq = self._get_seq_id()
        self._request_callbacks[seq] = on_reply
        try:
            self._send(consts.MSG_REQUEST, seq, (handler, self._box(args)))
        except BaseException:
            self._request_callbacks.pop(seq, None)
            raise
        return seq

    def _start_request(
        self, handler: int, args: tuple[Any, ...]
    ) -> tuple[int, asyncio.Future[Any]]:
        future: asyncio.Future[Any] = self._loop.create_future()

        def settle(is_error: bool, value: Any) -> None:
            self._pending.pop(seq, None)
            if future.done():
                return
            if not is_error:
                future.set_result(value)
            elif isinstance(value, StopIteration):
                # A future cannot hold StopIteration.
                future.set_exception(RuntimeError(f"peer raised {value!r}"))
            else:
                future.set_exception(value)

        seq = self._send_request(handler, args, settle)
        self._pending[seq] = future
        return seq, future

    async def _wait_reply(
        self,
        seq: int,
        future: asyncio.Future[Any],
        deadline: float | None,
        description: str,
        timeout: float | None,
    ) -> Any:
        try:
            await self._wait_until(future, deadline, description, timeout)
            return future.result()
        finally:
            if not future.done():
                future.cancel()
            self._pending.pop(seq, None)
            self._request_callbacks.pop(seq, None)

    async def _wait_until(
        self,
        future: asyncio.Future[Any],
        deadline: float | None,
        description: str,
        timeout: float | None,
    ) -> None:
        # On timeout asyncio.wait returns and leaves the future pending, unlike
        # wait_for, so a TimeoutError raised by the peer cannot pass for ours.
        remaining = None if deadline is None else max(0.0, deadline - self._loop.time())
        await asyncio.wait({future}, timeout=remaining)
        if not future.done():
            raise CallTimeoutError(
                f"{description} on connection {self.conn_id} timed out "
                f"after {timeout} s"
            )

    def _deadline(self, timeout: Any) -> tuple[float | None, float | None]:
        if timeout is _DEFAULT:
            timeout = self.options.call_timeout
        if timeout is None:
            return None, None
        return self._loop.time() + timeout, timeout

    async def get_root(self, *, timeout: Any = _DEFAULT) -> Any:
        """Fetch the peer's root service once and return the cached reference.

        The reference only identifies the peer's service in requests: reading its
        attributes would need a blocking request and raises
        :class:`SyncRequestError`.

        Raises:
            CallTimeoutError: No reply within the timeout (default
                ``options.call_timeout``). A later call tries again.
            ConnectionClosedError: The connection closed first.
        """
        self._check_loop()
        deadline, timeout = self._deadline(timeout)
        return await self._fetch_root(deadline, timeout)

    async def _fetch_root(self, deadline: float | None, timeout: float | None) -> Any:
        if self._remote_root is not None:
            return self._remote_root
        if self._root_future is None or self._root_future.done():
            self._root_future = self._start_root_request()
        # Callers share one request, so a caller's timeout leaves it open.
        root_future = self._root_future
        await self._wait_until(
            root_future, deadline, "fetching the peer's root", timeout
        )
        return root_future.result()

    def _start_root_request(self) -> asyncio.Future[Any]:
        root_future: asyncio.Future[Any] = self._loop.create_future()

        def settle(is_error: bool, value: Any) -> None:
            self._pending.pop(seq, None)
            if root_future.done():
                return
            if is_error:
                root_future.set_exception(value)
            else:
                self._remote_root = value
                root_future.set_result(value)

        seq = self._send_request(consts.HANDLE_GETROOT, (), settle)
        self._pending[seq] = root_future
        # Every caller may have timed out before the request fails.
        root_future.add_done_callback(_retrieve_exception)
        return root_future

    async def call(self, name: str, *args: Any, timeout: Any = _DEFAULT) -> Any:
        """Call an exposed method of the peer's root service and return its result.

        ``name`` is the method name with or without the ``exposed_`` prefix.
        Arguments must be values that rpyc passes by value: None, bool, int,
        float, complex, str, bytes, and tuples or frozensets of these. Anything
        else would reach the peer as a reference, which it could only use with
        blocking requests.

        Args:
            name: Method name on the peer's service.
            *args: Positional arguments.
            timeout: Seconds to wait for the reply, including fetching the root
                on first use; None waits for ever; the default is
                ``options.call_timeout``.

        Raises:
            TypeError: An argument is not passed by value.
            CallTimeoutError: No reply within the timeout.
            ConnectionClosedError: The connection closed before the reply came.
            Exception: Whatever the peer's method raised, rebuilt by rpyc.
        """
        self._check_loop()
        _check_by_value(name, args)
        deadline, timeout = self._deadline(timeout)
        root = await self._fetch_root(deadline, timeout)
        seq, future = self._start_request(
            consts.HANDLE_CALLATTR, (root, name, args, ())
        )
        return await self._wait_reply(seq, future, deadline, f"call {name!r}", timeout)

    def notify(self, name: str, *args: Any) -> None:
        """Call an exposed method of the peer without waiting for its result.

        Notifications and calls reach the peer in the order they were made. The
        peer's reply is dropped; an error it reports is logged as a warning.
        Usable from synchronous code such as state handlers.

        Raises:
            TypeError: An argument is not passed by value.
            ConnectionClosedError: The connection is closed.
        """
        _check_by_value(name, args)
        if self._finished:
            raise self._closed_error()
        if self._remote_root is not None and not self._notify_backlog:
            self._send_notification(name, args)
            return
        # The root is not known yet: queue in order and send once it is.
        self._notify_backlog.append((name, args))
        if self._notify_task is None:
            self._notify_task = self._loop.create_task(self._flush_notifications())

    def _send_notification(self, name: str, args: tuple[Any, ...]) -> None:
        def log_error(is_error: bool, value: Any) -> None:
            if is_error:
                self._log.warning("notification %r failed on the peer: %r", name, value)

        self._send_request(
            consts.HANDLE_CALLATTR, (self._remote_root, name, args, ()), log_error
        )

    async def drain_notifications(self, timeout: float) -> bool:
        """Wait up to `timeout` seconds until queued notifications are sent.

        Notifications made before the peer's root service is known wait in a
        queue; closing the connection drops them. Returns whether none is left.
        """
        task = self._notify_task
        if task is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(task), timeout)
        return not self._notify_backlog

    async def _flush_notifications(self) -> None:
        try:
            await self.get_root(timeout=None)
            while self._notify_backlog and not self._finished:
                name, args = self._notify_backlog.popleft()
                self._send_notification(name, args)
        except ConnectionClosedError:
            self._notify_backlog.clear()
        except Exception as exc:
            self._log.warning(
                "dropped %d notifications: %r", len(self._notify_backlog), exc
            )
            self._notify_backlog.clear()
        finally:
            self._notify_task = None

    async def ping(self, *, timeout: Any = _DEFAULT) -> None:
        """Send a ping request and wait for the peer's echo.

        Raises:
            CallTimeoutError: No echo within the timeout.
            ConnectionClosedError: The connection closed first.
        """
        self._check_loop()
        deadline, timeout = self._deadline(timeout)
        seq, future = self._start_request(consts.HANDLE_PING, (b"ping",))
        echo = await self._wait_reply(seq, future, deadline, "ping", timeout)
        if echo != b"ping":
            raise ConnectionError(f"connection {self.conn_id}: ping echo mismatch")

    # -- blocking rpyc paths, refused -----------------------------------------

    def sync_request(self, handler: int, *args: Any) -> Any:
        """Refuse rpyc's blocking request path.

        Raises:
            SyncRequestError: Always.
        """
        raise SyncRequestError(
            f"connection {self.conn_id}: a blocking rpyc request (handler {handler}) "
            "cannot be served on an asyncio-driven connection; use "
            "'await conn.call(name, *args)' with by-value arguments"
        )

    def serve(self, *args: Any, **kwargs: Any) -> bool:
        """Refuse rpyc's blocking serve loop; the asyncio loop dispatches frames.

        Raises:
            SyncRequestError: Always.
        """
        raise SyncRequestError(
            f"connection {self.conn_id}: frames are dispatched by the asyncio loop; "
            "blocking rpyc waits (AsyncResult.value, conn.serve) are not supported"
        )

    def _netref_factory(self, id_pack: tuple[Any, ...]) -> Any:
        # rpyc requests a new class's method names from the peer with a blocking
        # request. A proxy class without methods avoids it: references are only
        # used as call targets here.
        name_pack, class_id = id_pack[0], id_pack[1]
        proxy_class = netref.builtin_classes_cache.get(name_pack)
        if proxy_class is None:
            key = (name_pack, class_id, 0)
            proxy_class = self._netref_classes_cache.get(key)
            if proxy_class is None:
                proxy_class = netref.class_factory(key, ())
                self._netref_classes_cache[key] = proxy_class
        return proxy_class(self, id_pack)

    # -- closing ------------------------------------------------------------

    def _handle_close(self) -> None:
        if self.close_reason is None:
            self.close_reason = "closed by the peer"
        self._log.info("the peer requested close")
        self._cleanup()

    def _cleanup(self, _anyway: bool = True) -> None:
        if self._finished:
            return
        self._finished = True
        self._closed = True
        if self.close_reason is None:
            self.close_reason = "closed"
        pending = list(self._pending.values())
        self._pending.clear()
        try:
            super()._cleanup(_anyway)
        except Exception:
            self._log.exception("the local service's on_disconnect failed")
            self._request_callbacks.clear()
            self._local_root = None
            self._remote_root = None
        for future in pending:
            if not future.done():
                future.set_exception(self._closed_error())
        self._received.clear()
        self._frames.clear()
        self._notify_backlog.clear()
        self._backlog_empty.set()
        self._output_ready.set()
        self._finished_event.set()
        self._log.info("closed: %s", self.close_reason)

    def close(self) -> None:
        """Start closing: tell the peer, fail pending calls, flush, close.

        Safe to call from any thread and more than once. Await
        :meth:`wait_closed` or use :meth:`aclose` to wait for the transport.
        """
        if not getattr(self, "_driver_ready", False) or self._finished:
            return
        if threading.get_ident() != self._loop_thread:
            with contextlib.suppress(RuntimeError):
                self._loop.call_soon_threadsafe(self.close)
            return
        if self.close_reason is None:
            self.close_reason = "closed locally"
        try:
            self._send_request(consts.HANDLE_CLOSE, (), _ignore_reply)
        except Exception as exc:
            self._log.debug("could not send the close request: %r", exc)
        self._cleanup()

    async def wait_closed(self, *, timeout: float | None = None) -> None:
        """Wait until the connection closed and its transport finished.

        Args:
            timeout: Seconds to wait for queued output to drain once closed;
                after that the transport is aborted. None waits for ever.
        """
        await self._finished_event.wait()
        tasks = {self._writer_task, *self._tasks}
        tasks = {task for task in tasks if not task.done()}
        if not tasks:
            return
        done, stuck = await asyncio.wait(tasks, timeout=timeout)
        if stuck:
            self._log.warning(
                "transport did not finish within %s s; aborting it", timeout
            )
            for task in stuck:
                task.cancel()
            await asyncio.wait(stuck)

    async def aclose(self) -> None:
        """Close gracefully and wait up to ``options.close_timeout`` for it."""
        self.close()
        await self.wait_closed(timeout=self.options.close_timeout)

    def attach_task(self, task: asyncio.Task[Any]) -> None:
        """Tie a transport task (e.g. a reader) to the connection's lifetime.

        :meth:`wait_closed` waits for it and cancels it when it outlives the
        close timeout.
        """
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            self.close()

    def __repr__(self) -> str:
        state = "closed" if self._finished else "open"
        return f"<AsyncConnection {self.conn_id} {state} peer={self.peer!r}>"


def _ignore_reply(is_error: bool, value: Any) -> None:
    pass


def _retrieve_exception(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()


def _check_by_value(name: Any, args: tuple[Any, ...]) -> None:
    if type(name) is not str:
        raise TypeError(f"method name must be a str, got {type(name).__name__}")
    for position, arg in enumerate(args):
        if not brine.dumpable(arg):
            raise TypeError(
                f"argument {position} of {name!r} is a {type(arg).__name__}, which "
                "rpyc passes by reference; pass None, bool, int, float, str, bytes "
                "or tuples of these (encode structures to bytes first)"
            )
