"""The collector: an rpyc server that receives telemetry from many machines.

It listens on TCP, and optionally on a WebSocket for ``ws://`` telemetry (from
Pyodide, or through a relay). Usage::

    from asyncmachine import dbg

    collector = dbg.Collector("127.0.0.1", 6831)
    await collector.start()
    await collector.serve_ws("127.0.0.1", 6832, path="/dbg.ws")  # optional
    ...
    collector.dump("session.jsonl.gz")
    await collector.stop()

An aiohttp application can mount the WebSocket endpoint itself::

    app.router.add_get("/dbg.ws", collector.ws_handler)
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import os
import time
from collections.abc import Callable, Collection, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import rpyc

from .. import rpc
from ..history import (
    Dump,
    MachineDump,
    MachineSchema,
    MemoryHistory,
    TxRecord,
    read_dump,
    write_dump,
)
from ..telemetry import DEFAULT_HOST, DEFAULT_PORT
from ..telemetry._wire import WIRE_VERSION, WireDecoder, WireError

if TYPE_CHECKING:
    from aiohttp import web

__all__ = ["Collector", "MachineData"]

logger = logging.getLogger("asyncmachine.dbg")

DEFAULT_MAX_RECORDS = 50_000
"""Transitions kept per machine by default; older ones are dropped first."""

# Largest push payload accepted, in bytes (the rpc frame limit is 1 MiB).
_MAX_PAYLOAD = 1 << 20


class MachineData:
    """What the collector knows about one machine.

    Attributes:
        schema: the latest schema record.
        history: the received transitions, bounded by the collector's limit.
        conn_id: the connection the machine's telemetry came from, or None
            for machines imported from a dump.
        connected: whether that connection is open.
        disposed: whether the machine reported its disposal.
        dropped: records its process reported as dropped.
        process: the sender's process info (pid, host, program).
    """

    __slots__ = (
        "schema",
        "history",
        "conn_id",
        "connected",
        "disposed",
        "dropped",
        "process",
    )

    def __init__(self, schema: MachineSchema, max_records: int | None) -> None:
        self.schema = schema
        self.history = MemoryHistory(schema, max_records=max_records)
        self.conn_id: str | None = None
        self.connected = False
        self.disposed = False
        self.dropped = schema.dropped
        self.process: dict[str, Any] = {}

    @property
    def id(self) -> str:
        """The machine id."""
        return self.schema.id

    def to_dump(self) -> MachineDump:
        """Return the machine's schema (with its drop count) and records."""
        schema_json = self.schema.to_json()
        schema_json["dropped"] = self.dropped
        return MachineDump(MachineSchema.from_json(schema_json), self.history.records())

    def __repr__(self) -> str:
        return f"<MachineData {self.id} records={len(self.history)}>"


class _CollectorService(rpyc.Service):
    """The service each telemetry connection talks to."""

    def __init__(self, collector: Collector) -> None:
        self.collector = collector
        self.decoder = WireDecoder()
        self.conn_id = "?"
        self.info: dict[str, Any] = {}
        self.machine_ids: set[str] = set()

    def on_connect(self, conn: Any) -> None:
        self.conn_id = conn.conn_id
        self.collector._on_connect(self, conn)

    def on_disconnect(self, conn: Any) -> None:
        self.collector._on_disconnect(self)

    def exposed_hello(self, version: Any, info: Any) -> int:
        if type(version) is not int:
            raise ValueError("hello: the version must be an int")
        if version != WIRE_VERSION:
            logger.warning(
                "connection %s speaks telemetry version %r, the collector %d",
                self.conn_id,
                version,
                WIRE_VERSION,
            )
        if isinstance(info, bytes) and len(info) < 4096:
            try:
                parsed = json.loads(info)
            except ValueError:
                parsed = None
            if isinstance(parsed, dict):
                self.info = parsed
        logger.info(
            "telemetry client %s: pid %s on %s (%s)",
            self.conn_id,
            self.info.get("pid", "?"),
            self.info.get("host", "?"),
            self.info.get("program") or "?",
        )
        return WIRE_VERSION

    def exposed_push(self, payload: Any, ints: Any = b"") -> int:
        if not isinstance(payload, bytes) or not isinstance(ints, bytes):
            raise TypeError("push: the payload and the ints must be bytes")
        if len(payload) + len(ints) > _MAX_PAYLOAD:
            raise ValueError(
                f"push: payload of {len(payload) + len(ints)} bytes is too large"
            )
        try:
            messages = self.decoder.decode(payload, ints)
        except WireError as err:
            messages = getattr(err, "decoded", [])
            self.collector.invalid += 1
            logger.error("connection %s sent an invalid message: %s", self.conn_id, err)
        self.collector._apply(self, messages)
        return len(messages)


class Collector:
    """Receives telemetry over rpyc (TCP) and keeps a history per machine.

    Args:
        host: the address to listen on.
        port: the port; 0 picks a free one (see :attr:`port` after start).
        max_records: transitions kept per machine; None keeps all.
        on_change: called with the collector after new data arrived (from the
            loop thread; keep it quick).
        allowed_origins: values of the ``Origin`` header that may open a
            telemetry WebSocket, e.g. the JupyterLite page
            ``{"http://127.0.0.1:8000"}``; requests without the header (clients
            that are not browsers) are always accepted.
    """

    def __init__(
        self,
        host: str = DEFAULT_HOST,
        port: int = DEFAULT_PORT,
        *,
        max_records: int | None = DEFAULT_MAX_RECORDS,
        on_change: Callable[[Collector], Any] | None = None,
        allowed_origins: Collection[str] = (),
    ) -> None:
        self.host = host
        self._port = port
        self.max_records = max_records
        self.allowed_origins = frozenset(allowed_origins)
        self.machines: dict[str, MachineData] = {}
        self.received = 0
        self.invalid = 0
        self.generation = 0
        self._on_change: list[Callable[[Collector], Any]] = []
        if on_change is not None:
            self._on_change.append(on_change)
        self._server: rpc.TcpServer | None = None
        self._ws_endpoint: rpc.WebSocketEndpoint | None = None
        self._ws_server: rpc.WebSocketServer | None = None
        self._changed: asyncio.Event | None = None
        self._services: set[_CollectorService] = set()

    # Lifecycle

    async def start(self) -> None:
        """Start listening.

        Raises:
            OSError: the address cannot be bound, e.g. the port is in use.
        """
        if self._server is not None:
            return
        self._changed = asyncio.Event()
        self._server = await rpc.serve_tcp(self._new_service, self.host, self._port)
        logger.info("collector listening on %s", self.address)

    async def serve_ws(
        self, host: str = DEFAULT_HOST, port: int = 0, *, path: str = "/dbg.ws"
    ) -> str:
        """Also receive telemetry over WebSocket at ``ws://host:port/path``.

        Needs aiohttp. Returns the URL to give to ``telemetry.attach`` or
        ``AM_DBG_ADDR``; :meth:`stop` closes it too.

        Raises:
            OSError: the address cannot be bound, e.g. the port is in use.
            RuntimeError: the collector already serves a WebSocket.
        """
        if self._ws_server is not None:
            raise RuntimeError(
                f"the collector already serves a WebSocket at {self._ws_server.url}"
            )
        if self._changed is None:
            self._changed = asyncio.Event()
        self._ws_server = await rpc.serve_ws(
            self._new_service,
            host,
            port,
            path=path,
            allowed_origins=self.allowed_origins,
        )
        logger.info("collector listening on %s", self._ws_server.url)
        return self._ws_server.url

    @property
    def ws_url(self) -> str | None:
        """The URL of the WebSocket started by :meth:`serve_ws`, if any."""
        return self._ws_server.url if self._ws_server is not None else None

    async def ws_handler(self, request: web.Request) -> web.StreamResponse:
        """Serve one telemetry WebSocket; an aiohttp handler for any route.

        Mount it on an application, e.g. a relay:
        ``app.router.add_get("/dbg.ws", collector.ws_handler)``. The
        collector's `allowed_origins` apply.
        """
        if self._ws_endpoint is None:
            if self._changed is None:
                self._changed = asyncio.Event()
            self._ws_endpoint = rpc.WebSocketEndpoint(
                self._new_service, allowed_origins=self.allowed_origins
            )
        return await self._ws_endpoint.handle(request)

    def _new_service(self) -> _CollectorService:
        return _CollectorService(self)

    async def stop(self) -> None:
        """Close every connection and stop listening; the data stays."""
        server, self._server = self._server, None
        ws_server, self._ws_server = self._ws_server, None
        if ws_server is not None:
            await ws_server.close()
        if self._ws_endpoint is not None:
            await self._ws_endpoint.close()
        if server is not None:
            await server.close()
        if server is not None or ws_server is not None:
            logger.info(
                "collector stopped: %d machines, %d transitions received",
                len(self.machines),
                self.received,
            )

    async def __aenter__(self) -> Collector:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    @property
    def port(self) -> int:
        """The bound port, or the requested one before :meth:`start`."""
        if self._server is not None:
            return self._server.port
        return self._port

    @property
    def address(self) -> str:
        """``host:port`` to give to ``AM_DBG_ADDR`` or ``telemetry.attach``."""
        return f"{self.host}:{self.port}"

    @property
    def running(self) -> bool:
        """Whether the server is listening."""
        return self._server is not None

    @property
    def connections(self) -> int:
        """The number of open telemetry connections."""
        return len(self._services)

    def add_listener(self, fn: Callable[[Collector], Any]) -> None:
        """Call `fn(collector)` after each change."""
        self._on_change.append(fn)

    # Receiving

    def _on_connect(self, service: _CollectorService, conn: Any) -> None:
        self._services.add(service)
        logger.info("telemetry connection %s from %s", service.conn_id, conn.peer)

    def _on_disconnect(self, service: _CollectorService) -> None:
        self._services.discard(service)
        for mach_id in service.machine_ids:
            data = self.machines.get(mach_id)
            if data is not None and data.conn_id == service.conn_id:
                data.connected = False
        logger.info(
            "telemetry connection %s closed (%d machines)",
            service.conn_id,
            len(service.machine_ids),
        )
        self._changed_now()

    def _apply(self, service: _CollectorService, messages: Iterable[Any]) -> None:
        machines = self.machines
        for message in messages:
            if type(message) is TxRecord:
                data = machines.get(message.mach)
                if data is None or data.conn_id != service.conn_id:
                    # Another connection took this id over; ignore the old one.
                    continue
                data.history.append(message)
                self.received += 1
            elif isinstance(message, MachineSchema):
                self._add_schema(service, message)
            else:
                data = machines.get(message["mach"])
                if data is None or data.conn_id != service.conn_id:
                    continue
                if message["kind"] == "dropped":
                    data.dropped += int(message.get("count", 0))
                else:
                    data.disposed = True
        self._changed_now()

    def _add_schema(self, service: _CollectorService, schema: MachineSchema) -> None:
        data = self.machines.get(schema.id)
        if data is None:
            data = MachineData(schema, self.max_records)
            self.machines[schema.id] = data
            logger.info(
                "machine %s connected over %s (%d states)",
                schema.id,
                service.conn_id,
                len(schema.states),
            )
        else:
            if data.conn_id != service.conn_id:
                logger.info(
                    "machine %s now reports over %s", schema.id, service.conn_id
                )
            data.schema = schema
            data.history.set_schema(schema)
            data.disposed = False
        data.conn_id = service.conn_id
        data.connected = True
        data.process = service.info
        service.machine_ids.add(schema.id)

    def _changed_now(self) -> None:
        self.generation += 1
        if self._changed is not None:
            self._changed.set()
        for fn in self._on_change:
            try:
                fn(self)
            except Exception:
                logger.exception("collector change listener %r failed", fn)

    async def wait_for(
        self, predicate: Callable[[Collector], bool], timeout: float = 10.0
    ) -> None:
        """Wait until `predicate(collector)` is true, checking after each change.

        Raises:
            TimeoutError: it did not become true within `timeout` seconds.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        if self._changed is None:
            self._changed = asyncio.Event()
        while not predicate(self):
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise TimeoutError(
                    f"the collector's data did not match within {timeout} s"
                )
            self._changed.clear()
            try:
                await asyncio.wait_for(self._changed.wait(), min(remaining, 0.5))
            except TimeoutError:
                pass

    # Data

    def machine(self, mach_id: str) -> MachineData:
        """Return the data of machine `mach_id`.

        Raises:
            KeyError: no such machine was seen.
        """
        try:
            return self.machines[mach_id]
        except KeyError:
            known = ", ".join(self.machines) or "none"
            raise KeyError(f"no machine {mach_id!r}; machines: {known}") from None

    def records(self, mach_id: str) -> list[TxRecord]:
        """Return the kept transitions of `mach_id`, oldest first."""
        return self.machine(mach_id).history.records()

    def timeline(self) -> list[tuple[float, int, str, int]]:
        """Return every kept transition in time order.

        Each item is ``(time, order, machine id, sequence number)``; `order`
        keeps equal times in arrival order.
        """
        counter = itertools.count()
        items = []
        for mach_id, data in self.machines.items():
            history = data.history
            seq = history.first_seq
            for record in history.records():
                items.append((record.time, next(counter), mach_id, seq))
                seq += 1
        items.sort()
        return items

    def clear(self) -> None:
        """Forget every machine and transition."""
        self.machines.clear()
        self._changed_now()

    def to_dump(self) -> list[MachineDump]:
        """Return every machine as dump content."""
        return [data.to_dump() for data in self.machines.values()]

    def dump(self, path: str | os.PathLike[str]) -> Path:
        """Write every machine and transition to a dump file (atomically).

        Raises:
            OSError: the file cannot be written.
        """
        started = time.monotonic()
        machines = self.to_dump()
        target = write_dump(path, machines)
        logger.info(
            "wrote dump %s: %d machines, %d transitions in %.2f s",
            target,
            len(machines),
            sum(len(m.records) for m in machines),
            time.monotonic() - started,
        )
        return target

    def load(self, path: str | os.PathLike[str]) -> Dump:
        """Import a dump file; its machines replace those with the same id.

        Raises:
            asyncmachine.history.DumpError: the file is not a valid dump.
            OSError: the file cannot be read.
        """
        dump = read_dump(path)
        self.import_dump(dump)
        logger.info(
            "imported dump %s: %d machines", os.fspath(path), len(dump.machines)
        )
        return dump

    def import_dump(self, dump: Dump) -> None:
        """Add the machines of `dump`, replacing those with the same id."""
        for machine in dump.machines:
            data = MachineData(machine.schema, self.max_records)
            data.history.extend(machine.records)
            self.machines[machine.schema.id] = data
        self._changed_now()
