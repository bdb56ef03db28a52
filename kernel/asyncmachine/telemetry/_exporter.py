"""The exporter: one connection to a collector, its outbox and the sending task.

Tracers of every machine attached to the same address on the same event loop
share one exporter. A tracer only appends a captured record to the outbox (a
deque, safe to append from any thread). The exporter's task packs the queued
records whenever a few hundred are waiting (see :mod:`._batches`), and sends the
packed records in push calls of up to ``batch_size`` records, at least every
``flush_interval`` seconds. When the outbox is full, records are dropped and
counted, so the machine never waits for the debugger.

The connection is rpyc over TCP, or over a WebSocket for ``ws://`` and
``wss://`` addresses: aiohttp in CPython, the browser's WebSocket in Pyodide.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
import sys
import threading
import time
from collections import deque
from itertools import repeat, starmap
from typing import TYPE_CHECKING, Any

from .. import rpc
from ._address import Address
from ._batches import PendingItems, Push
from ._wire import WIRE_VERSION, Block

if TYPE_CHECKING:
    from ._tracer import TelemetryTracer

__all__ = ["Exporter", "ExporterOptions"]

logger = logging.getLogger("asyncmachine.telemetry")

# Push calls sent before the exporter waits for the oldest reply.
_MAX_IN_FLIGHT = 3
# Queued records that make a tracer wake the exporter to pack them. Packing
# soon keeps few captured tuples alive, which costs the machine's process less
# memory traffic than a long outbox.
_PACK_AT = 256
# Errors of a push call after which the connection is closed and opened again.
_CONNECTION_ERRORS = (
    OSError,
    TimeoutError,
    ConnectionError,
    rpc.CallTimeoutError,
    rpc.ConnectionClosedError,
)
# Seconds between two warnings about dropped records or failed connections.
_WARN_EVERY = 5.0


class ExporterOptions:
    """Limits and timings of an exporter.

    Attributes:
        outbox_size: the maximum number of records waiting to be sent; more
            are dropped.
        batch_size: the maximum number of records encoded into one ``push``.
            The records waiting to be sent are at most `outbox_size` queued
            plus `outbox_size` packed, plus the pushes in flight.
        flush_interval: seconds the exporter waits for more records before it
            sends a batch smaller than `batch_size`.
        call_timeout: seconds a ``push`` call may take before the connection is
            considered broken.
        connect_timeout: seconds allowed to connect and say hello.
        backoff: the first delay in seconds before reconnecting; it doubles
            after each failure up to `max_backoff`.
        max_backoff: the longest delay between two connection attempts.
        idle_close: seconds the connection stays open after the last attached
            machine was disposed or detached.
    """

    __slots__ = (
        "outbox_size",
        "batch_size",
        "flush_interval",
        "call_timeout",
        "connect_timeout",
        "backoff",
        "max_backoff",
        "idle_close",
    )

    def __init__(
        self,
        *,
        outbox_size: int = 10_000,
        batch_size: int = 5000,
        flush_interval: float = 0.02,
        call_timeout: float = 10.0,
        connect_timeout: float = 5.0,
        backoff: float = 0.2,
        max_backoff: float = 10.0,
        idle_close: float = 1.0,
    ) -> None:
        if outbox_size < 1:
            raise ValueError(f"outbox_size must be at least 1, got {outbox_size}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        self.outbox_size = outbox_size
        self.batch_size = batch_size
        self.flush_interval = flush_interval
        self.call_timeout = call_timeout
        self.connect_timeout = connect_timeout
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.idle_close = idle_close


def _process_info() -> bytes:
    info = {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "program": os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else "",
    }
    return json.dumps(info).encode()


class Exporter:
    """Sends the records of attached machines to one collector address.

    Create it through :func:`asyncmachine.telemetry.attach`; it runs on `loop`.
    """

    def __init__(
        self,
        address: Address,
        loop: asyncio.AbstractEventLoop,
        options: ExporterOptions,
    ) -> None:
        self.address = address
        self.options = options
        self.loop = loop
        self.outbox: deque[Any] = deque()
        self.capacity = options.outbox_size
        # The outbox length at which a tracer wakes the task to pack records.
        self.pack_at = max(1, min(_PACK_AT, self.capacity // 2))
        self.sent = 0
        self.dropped = 0
        self.batches = 0
        self.connects = 0
        self.failures = 0
        self._tracers: dict[str, TelemetryTracer] = {}
        self._lock = threading.Lock()
        self._conn: rpc.AsyncConnection | None = None
        self._loop_thread: int | None = None
        self._pending = PendingItems(address, self._count_lost)
        # Unanswered push calls: the call, its items and its transitions.
        self._in_flight: deque[tuple[asyncio.Future[Any], list[Any], int]] = deque()
        self._wake_pending = False
        self._wake: asyncio.Event | None = None
        # Ends a reconnection backoff early, for a flush or a close.
        self._interrupt: asyncio.Event | None = None
        self._drained: asyncio.Event | None = None
        self._flush_waiters = 0
        self._closing = False
        self._closed = False
        self._task: asyncio.Task[None] | None = None
        self._last_warning = 0.0
        self._last_drop_warning = 0.0
        loop.call_soon_threadsafe(self._start)

    def __repr__(self) -> str:
        state = "connected" if self.connected else "disconnected"
        return f"<Exporter {self.address} {state} machines={len(self._tracers)}>"

    @property
    def connected(self) -> bool:
        """Whether a connection to the collector is open."""
        return self._conn is not None and not self._conn.closed

    @property
    def closed(self) -> bool:
        """Whether the exporter stopped for good."""
        return self._closed

    def stats(self) -> dict[str, Any]:
        """Return counters: records sent and dropped, batches, connections."""
        return {
            "address": str(self.address),
            "machines": sorted(self._tracers),
            "connected": self.connected,
            "queued": len(self.outbox) + self._pending.transitions,
            "sent": self.sent,
            "dropped": self.dropped,
            "batches": self.batches,
            "connects": self.connects,
            "failures": self.failures,
        }

    # Called by tracers, from any thread.

    def register(self, tracer: TelemetryTracer) -> None:
        """Add a machine's tracer; its schema is queued before its records."""
        with self._lock:
            self._tracers[tracer.mach_id] = tracer
        self.outbox.append(tracer.schema_message)
        self.signal()
        # A task idling without machines may be in a pause; connect now.
        with contextlib.suppress(RuntimeError):
            self.loop.call_soon_threadsafe(self._end_pause)

    def unregister(self, mach_id: str) -> None:
        """Forget a machine after its last records were queued."""
        with self._lock:
            self._tracers.pop(mach_id, None)
        self.signal()

    def has_machines(self) -> bool:
        """Whether any machine is registered."""
        return bool(self._tracers)

    def note_drop(self, mach_id: str) -> None:
        """Count one dropped record and warn, at most every few seconds."""
        self.dropped += 1
        now = time.monotonic()
        if now - self._last_drop_warning >= _WARN_EVERY:
            self._last_drop_warning = now
            logger.warning(
                "telemetry to %s: the outbox is full (%d records), dropping "
                "records of machine %s; %d dropped so far",
                self.address,
                self.capacity,
                mach_id,
                self.dropped,
            )

    def signal(self) -> None:
        """Wake the sending task, at most once per round."""
        if self._wake_pending:
            return
        self._wake_pending = True
        self.wake()

    def wake(self) -> None:
        """Wake the sending task, e.g. when `pack_at` records are queued."""
        if threading.get_ident() == self._loop_thread and self._wake is not None:
            self._wake.set()
        else:
            with contextlib.suppress(RuntimeError):
                self.loop.call_soon_threadsafe(self._set_wake)

    def _set_wake(self) -> None:
        if self._wake is not None:
            self._wake.set()

    def _end_pause(self) -> None:
        if self._interrupt is not None:
            self._interrupt.set()

    # The sending task, on self.loop.

    def _start(self) -> None:
        self._loop_thread = threading.get_ident()
        self._wake = asyncio.Event()
        self._interrupt = asyncio.Event()
        self._drained = asyncio.Event()
        if self._wake_pending or self.outbox:
            self._wake.set()
        self._task = self.loop.create_task(
            self._run(), name=f"am-telemetry-{self.address}"
        )

    async def _run(self) -> None:
        assert self._wake is not None and self._drained is not None
        delay = self.options.backoff
        idle_since: float | None = None
        try:
            while not self._closing:
                if not self.connected:
                    if self._idle() and not self._tracers:
                        # Nothing to send and no machine left: stop
                        # reconnecting once that lasted idle_close seconds.
                        idle_since = idle_since or time.monotonic()
                        if time.monotonic() - idle_since >= self.options.idle_close:
                            self._closing = True
                            break
                        await self._pause(self.options.idle_close)
                        continue
                    idle_since = None
                    if not await self._connect():
                        await self._pause(delay)
                        delay = min(delay * 2, self.options.max_backoff)
                        continue
                    delay = self.options.backoff
                self._settle_finished()
                if not self.connected:
                    continue
                if self._idle():
                    self._drained.set()
                    if not self._tracers:
                        idle_since = idle_since or time.monotonic()
                        if time.monotonic() - idle_since >= self.options.idle_close:
                            self._closing = True
                            break
                        await self._pause(self.options.idle_close)
                        continue
                    idle_since = None
                    self._wake_pending = False
                    await self._wake.wait()
                    self._wake.clear()
                    continue
                self._drained.clear()
                self._pack_queued()
                self._start_pushes()
                await self._wait_for_work()
        except asyncio.CancelledError:
            pass
        finally:
            await self._shutdown()

    def _idle(self) -> bool:
        """Return whether no record is queued, packed or in flight."""
        return not self.outbox and not self._pending and not self._in_flight

    async def _pause(self, seconds: float) -> None:
        """Sleep, unless a flush or a close interrupts earlier.

        New records do not end the pause, so a busy machine does not defeat
        the reconnection backoff.
        """
        assert self._interrupt is not None
        self._interrupt.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._interrupt.wait(), seconds)

    def _pack_queued(self) -> None:
        """Pack the queued records, while fewer than `capacity` are packed."""
        count = min(len(self.outbox), self.capacity - self._pending.transitions)
        if count <= 0:
            return
        conn = self._conn
        max_frame_size = (
            conn.options.max_frame_size
            if conn is not None
            else rpc.DEFAULT_MAX_FRAME_SIZE
        )
        popleft = self.outbox.popleft
        # popleft is atomic, so tracers in other threads may append meanwhile;
        # starmap calls it count times without bytecode.
        messages = list(starmap(popleft, repeat((), count)))
        self._pending.pack(messages, max_frame_size, time.monotonic())

    def _send_due(self) -> bool:
        """Return whether to send the pending records now rather than wait for more."""
        pending = self._pending
        if not pending:
            return False
        if pending.transitions >= self.options.batch_size:
            return True
        if self._flush_waiters or self._closing:
            return True
        assert pending.since is not None
        return time.monotonic() - pending.since >= self.options.flush_interval

    def _start_pushes(self) -> None:
        """Start push calls while fewer than _MAX_IN_FLIGHT are unanswered."""
        conn = self._conn
        assert conn is not None and self._wake is not None
        while len(self._in_flight) < _MAX_IN_FLIGHT and self._send_due():
            pushes = self._pending.take_push(
                self.options.batch_size, conn.options.max_frame_size
            )
            for payload, data, items, transitions in pushes:
                call = asyncio.ensure_future(conn.call("push", payload, data))
                call.add_done_callback(self._push_done)
                self._in_flight.append((call, items, transitions))

    def _push_done(self, call: asyncio.Future[Any]) -> None:
        if self._wake is not None:
            self._wake.set()

    def _settle_finished(self) -> None:
        """Count the completed pushes, oldest first; reconnect after a failed one."""
        in_flight = self._in_flight
        while in_flight and in_flight[0][0].done():
            call, items, transitions = in_flight.popleft()
            err = None if call.cancelled() else call.exception()
            if err is None and not call.cancelled():
                self.batches += 1
                self.sent += transitions
            elif call.cancelled() or isinstance(err, _CONNECTION_ERRORS):
                self._count_lost(items)
                lost = len(items)
                for other, other_items, _ in in_flight:
                    other.cancel()
                    self._count_lost(other_items)
                    lost += len(other_items)
                in_flight.clear()
                self._lost(err, lost)
            else:
                # The collector raised while handling the push: its records
                # are lost, but the connection stays usable.
                logger.error(
                    "telemetry to %s: the collector rejected a push of %d messages: %r",
                    self.address,
                    len(items),
                    err,
                )
                self._count_lost(items)

    async def _wait_for_work(self) -> None:
        """Wait for queued records, a completed push or the flush interval's end."""
        assert self._wake is not None
        timer = None
        pending = self._pending
        if pending and pending.since is not None and not self._send_due():
            delay = pending.since + self.options.flush_interval - time.monotonic()
            # A timer handle costs less than asyncio.wait_for, which makes a task.
            timer = self.loop.call_later(max(0.0, delay), self._wake.set)
        try:
            if not self._wake.is_set() and (timer or self._in_flight or self.outbox):
                await self._wake.wait()
        finally:
            if timer is not None:
                timer.cancel()
        self._wake.clear()

    async def _open_connection(self) -> rpc.AsyncConnection:
        """Open the rpyc connection: TCP, aiohttp WebSocket or browser WebSocket."""
        address = self.address
        options = rpc.ConnectionOptions(
            call_timeout=self.options.call_timeout, compress=False
        )
        timeout = self.options.connect_timeout
        if not address.is_websocket:
            return await rpc.connect_tcp(
                address.host,
                address.port,
                None,
                options=options,
                connect_timeout=timeout,
            )
        if sys.platform == "emscripten":
            return await rpc.connect_pyodide_ws(
                address.url, None, options=options, connect_timeout=timeout
            )
        # rpc.connect_ws imports aiohttp on first use.
        return await rpc.connect_ws(
            address.url, None, options=options, connect_timeout=timeout
        )

    async def _connect(self) -> bool:
        try:
            conn = await self._open_connection()
        except (OSError, TimeoutError, rpc.ConnectionClosedError) as err:
            self._connect_failed(err)
            return False
        except Exception as err:
            # A failed WebSocket handshake (aiohttp.ClientError, e.g. HTTP 403
            # or 404) or a missing dependency such as aiohttp: retried too.
            self._connect_failed(err)
            return False
        try:
            version = await conn.call("hello", WIRE_VERSION, _process_info())
            if version != WIRE_VERSION:
                raise ConnectionError(
                    f"the collector speaks telemetry version {version!r}, this "
                    f"process {WIRE_VERSION}; run matching asyncmachine versions"
                )
            self._conn = conn
            with self._lock:
                schemas = [t.schema_message for t in self._tracers.values()]
            if schemas:
                await self._push(schemas)
        except (OSError, TimeoutError, ConnectionError, rpc.CallTimeoutError) as err:
            await conn.aclose()
            self._conn = None
            self._connect_failed(err)
            return False
        except Exception as err:
            # The collector's hello raised, e.g. it rejected the version.
            await conn.aclose()
            self._conn = None
            self._connect_failed(err)
            return False
        self.connects += 1
        logger.info(
            "telemetry connected to %s (%s), %d machines",
            self.address,
            conn.conn_id,
            len(schemas),
        )
        return True

    def _connect_failed(self, err: BaseException) -> None:
        self.failures += 1
        now = time.monotonic()
        if self.failures == 1 or now - self._last_warning >= _WARN_EVERY:
            self._last_warning = now
            logger.warning(
                "telemetry to %s: connecting failed (%d failures so far), "
                "retrying with backoff: %s",
                self.address,
                self.failures,
                err,
            )
        else:
            logger.debug("telemetry to %s: connecting failed: %s", self.address, err)

    async def _push(self, messages: list[Any]) -> None:
        """Send `messages` and wait for the reply (the schemas on connect)."""
        conn = self._conn
        assert conn is not None
        max_frame_size = conn.options.max_frame_size
        batch = PendingItems(self.address, self._count_lost)
        batch.pack(messages, max_frame_size, time.monotonic())
        pushes: list[Push] = batch.take_pushes(self.options.batch_size, max_frame_size)
        for payload, data, _items, _transitions in pushes:
            await conn.call("push", payload, data)

    def _lost(self, err: BaseException | None, count: int) -> None:
        logger.warning(
            "telemetry to %s: sending failed, %d messages lost, reconnecting: %r",
            self.address,
            count,
            err,
        )
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()

    def _count_lost(self, items: list[Any]) -> None:
        """Count the transitions in `items` (tuples or blocks) as dropped."""
        for item in items:
            if type(item) is tuple:
                self._count_lost_of(item[0], 1)
            elif type(item) is Block:
                for mach_id, count in item.runs():
                    self._count_lost_of(mach_id, count)

    def _count_lost_of(self, mach_id: str, count: int) -> None:
        tracer = self._tracers.get(mach_id)
        if tracer is not None:
            tracer.count_lost(count)
        else:
            self.dropped += count

    async def _shutdown(self) -> None:
        self._closed = True
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                await conn.aclose()
            logger.info(
                "telemetry to %s closed: %d records sent, %d dropped",
                self.address,
                self.sent,
                self.dropped,
            )
        if self._drained is not None:
            self._drained.set()
        _forget(self)

    # Flushing and closing, on self.loop.

    async def flush(self, timeout: float | None = 5.0) -> bool:
        """Wait until every queued record was sent; False on timeout or when closed."""
        if self._closed:
            return not self.outbox
        if self._idle():
            return True
        if self._drained is None:
            await asyncio.sleep(0)
        assert self._drained is not None and self._wake is not None
        assert self._interrupt is not None
        self._flush_waiters += 1
        try:
            self._drained.clear()
            self._wake.set()
            self._interrupt.set()
            await asyncio.wait_for(self._drained.wait(), timeout)
        except TimeoutError:
            return False
        finally:
            self._flush_waiters -= 1
        return self._idle()

    async def aclose(self, timeout: float = 2.0) -> None:
        """Send what is queued (waiting at most `timeout` seconds), then close."""
        if self._closed:
            return
        if self.connected:
            await self.flush(timeout)
        self._closing = True
        if self._wake is not None and self._interrupt is not None:
            self._wake.set()
            self._interrupt.set()
        task = self._task
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


# Exporters by (address, loop); see asyncmachine.telemetry.attach.
_exporters: dict[tuple[Address, asyncio.AbstractEventLoop], Exporter] = {}
_exporters_lock = threading.Lock()


def _forget(exporter: Exporter) -> None:
    with _exporters_lock:
        key = (exporter.address, exporter.loop)
        if _exporters.get(key) is exporter:
            del _exporters[key]


def get_exporter(
    address: Address, loop: asyncio.AbstractEventLoop, options: ExporterOptions
) -> Exporter:
    """Return the open exporter for `address` on `loop`, creating it if needed."""
    with _exporters_lock:
        key = (address, loop)
        exporter = _exporters.get(key)
        if exporter is None or exporter.closed or exporter._closing:
            exporter = Exporter(address, loop, options)
            _exporters[key] = exporter
        return exporter


def exporters() -> list[Exporter]:
    """Return the open exporters of this process."""
    with _exporters_lock:
        for key, exporter in list(_exporters.items()):
            # An exporter whose loop ended without closing it is gone too.
            if exporter.loop.is_closed():
                del _exporters[key]
        return [e for e in _exporters.values() if not e.closed]
