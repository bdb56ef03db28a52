"""The exporter: one connection to a collector, its outbox and the sending task.

Tracers of every machine attached to the same address on the same event loop
share one exporter. A tracer only appends a captured record to the outbox (a
deque, safe to append from any thread); the exporter's task encodes records in
batches and sends them. When the outbox is full, records are dropped and
counted, so the machine never waits for the debugger.
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
from typing import TYPE_CHECKING, Any

from .. import rpc
from ._address import Address
from ._wire import WIRE_VERSION, encode_batch

if TYPE_CHECKING:
    from ._tracer import TelemetryTracer

__all__ = ["Exporter", "ExporterOptions"]

logger = logging.getLogger("asyncmachine.telemetry")

# Push calls sent before the exporter waits for the oldest reply.
_MAX_IN_FLIGHT = 3
# Seconds between two warnings about dropped records or failed connections.
_WARN_EVERY = 5.0


class ExporterOptions:
    """Limits and timings of an exporter.

    Attributes:
        outbox_size: the maximum number of records waiting to be sent; more
            are dropped.
        batch_size: the maximum number of records encoded into one ``push``.
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
        batch_size: int = 1000,
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
        self.sent = 0
        self.dropped = 0
        self.batches = 0
        self.connects = 0
        self.failures = 0
        self._tracers: dict[str, TelemetryTracer] = {}
        self._lock = threading.Lock()
        self._conn: rpc.AsyncConnection | None = None
        # The last clock_after sent per machine on the current connection.
        self._last_after: dict[str, Any] = {}
        self._loop_thread: int | None = None
        self._wake_pending = False
        self._wake: asyncio.Event | None = None
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
            "queued": len(self.outbox),
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
        if threading.get_ident() == self._loop_thread and self._wake is not None:
            self._wake.set()
        else:
            with contextlib.suppress(RuntimeError):
                self.loop.call_soon_threadsafe(self._set_wake)

    def _set_wake(self) -> None:
        if self._wake is not None:
            self._wake.set()

    # The sending task, on self.loop.

    def _start(self) -> None:
        self._loop_thread = threading.get_ident()
        self._wake = asyncio.Event()
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
                    if not await self._connect():
                        await self._pause(delay)
                        delay = min(delay * 2, self.options.max_backoff)
                        continue
                    delay = self.options.backoff
                if not self.outbox:
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
                if (
                    len(self.outbox) < self.options.batch_size
                    and not self._flush_waiters
                    and self.options.flush_interval > 0
                ):
                    await asyncio.sleep(self.options.flush_interval)
                self._wake_pending = False
                await self._send_pending()
        except asyncio.CancelledError:
            pass
        finally:
            await self._shutdown()

    async def _pause(self, seconds: float) -> None:
        """Sleep, unless a flush or a close wakes the task earlier."""
        assert self._wake is not None
        self._wake.clear()
        self._wake_pending = False
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), seconds)

    async def _connect(self) -> bool:
        host, port = self.address
        options = rpc.ConnectionOptions(
            call_timeout=self.options.call_timeout, compress=False
        )
        try:
            conn = await rpc.connect_tcp(
                host,
                port,
                None,
                options=options,
                connect_timeout=self.options.connect_timeout,
            )
        except (OSError, TimeoutError, rpc.ConnectionClosedError) as err:
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
            self._last_after = {}
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

    async def _send_pending(self) -> None:
        """Send the outbox in batches, with a few push calls in flight."""
        conn = self._conn
        assert conn is not None
        outbox = self.outbox
        batch_size = self.options.batch_size
        in_flight: deque[tuple[asyncio.Future[Any], list[Any]]] = deque()
        try:
            while outbox and not conn.closed:
                count = min(len(outbox), batch_size)
                batch = [outbox.popleft() for _ in range(count)]
                for payload, part in self._encode(batch, conn.options.max_frame_size):
                    call = asyncio.ensure_future(conn.call("push", payload))
                    in_flight.append((call, part))
                    if len(in_flight) >= _MAX_IN_FLIGHT:
                        await self._settle(*in_flight.popleft())
            while in_flight:
                await self._settle(*in_flight.popleft())
        except (OSError, TimeoutError, ConnectionError, rpc.CallTimeoutError) as err:
            lost = 0
            for pending, part in in_flight:
                pending.cancel()
                self._count_lost(part)
                lost += len(part)
            self._lost(err, lost)

    async def _settle(self, call: asyncio.Future[Any], batch: list[Any]) -> None:
        """Wait for one push call; connection errors propagate."""
        try:
            await call
        except (OSError, TimeoutError, ConnectionError, rpc.CallTimeoutError):
            self._count_lost(batch)
            raise
        except Exception as err:
            # The collector raised while handling the batch: it is lost, but the
            # connection stays usable.
            logger.error(
                "telemetry to %s: the collector rejected a batch of %d messages: %r",
                self.address,
                len(batch),
                err,
            )
            self._count_lost(batch)
            return
        self.batches += 1
        self.sent += sum(1 for message in batch if type(message) is tuple)

    def _encode(
        self, batch: list[Any], max_frame_size: int
    ) -> list[tuple[bytes, list[Any]]]:
        """Encode `batch` into payloads below the frame limit."""
        payload = encode_batch(batch, self._last_after)
        limit = max_frame_size - 1024
        if len(payload) <= limit:
            return [(payload, batch)]
        if len(batch) == 1:
            logger.error(
                "telemetry to %s: dropped a message of %d bytes, over the frame "
                "limit of %d bytes",
                self.address,
                len(payload),
                limit,
            )
            self._count_lost(batch)
            return []
        # The halves are encoded again; clearing the chain makes the first
        # transition of each machine carry its clock_before.
        self._last_after.clear()
        half = len(batch) // 2
        return self._encode(batch[:half], max_frame_size) + self._encode(
            batch[half:], max_frame_size
        )

    async def _push(self, batch: list[Any]) -> None:
        """Send `batch` and wait for the reply (used for the schemas on connect)."""
        conn = self._conn
        assert conn is not None
        for payload, _part in self._encode(batch, conn.options.max_frame_size):
            await conn.call("push", payload)

    def _lost(self, err: BaseException, count: int) -> None:
        logger.warning(
            "telemetry to %s: sending failed, %d messages lost, reconnecting: %r",
            self.address,
            count,
            err,
        )
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()

    def _count_lost(self, batch: list[Any]) -> None:
        for message in batch:
            if type(message) is tuple:
                tracer = self._tracers.get(message[0])
                if tracer is not None:
                    tracer.count_lost()
                else:
                    self.dropped += 1

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
        if self._drained is None:
            await asyncio.sleep(0)
        assert self._drained is not None and self._wake is not None
        self._flush_waiters += 1
        try:
            self._drained.clear()
            self._wake.set()
            await asyncio.wait_for(self._drained.wait(), timeout)
        except TimeoutError:
            return False
        finally:
            self._flush_waiters -= 1
        return not self.outbox

    async def aclose(self, timeout: float = 2.0) -> None:
        """Send what is queued (waiting at most `timeout` seconds), then close."""
        if self._closed:
            return
        if self.connected:
            await self.flush(timeout)
        self._closing = True
        if self._wake is not None:
            self._wake.set()
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
