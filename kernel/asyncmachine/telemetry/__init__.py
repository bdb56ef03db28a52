"""Telemetry: send every transition of a machine to the am-dbg debugger.

Each attached machine sends its schema once, then one record per transition
(clocks before and after, called and target states, result, log lines, the
names of the args but never their values). A transition only queues a tuple of
references in a bounded outbox; a task encodes the records in batches and sends
them over rpyc. When the debugger is slow or absent the outbox fills and further
records are dropped and counted, so the machine never waits. The connection is
retried with backoff.

Usage::

    from asyncmachine import telemetry

    telemetry.attach(mach, "127.0.0.1:6831")
    # or over a WebSocket, e.g. from Pyodide or through a relay:
    # telemetry.attach(mach, "ws://127.0.0.1:6832/dbg.ws")
    ...
    await telemetry.flush()  # before exiting, to send what is queued

Setting ``AM_DBG_ADDR=host:port`` (or ``AM_DBG_ADDR=1`` for 127.0.0.1:6831, or
a ``ws://`` URL) attaches every new machine, through :func:`attach_from_env`.
WebSocket addresses use aiohttp in CPython and the browser's WebSocket in
Pyodide; both are imported when the first connection opens.

A machine attached outside a running asyncio loop sends from a background
thread, which flushes at interpreter exit. Inside a loop the exporter runs as a
task of that loop; await :func:`flush` before the loop ends.
"""

from __future__ import annotations

import asyncio
import atexit
import importlib.util
import logging
import os
import sys
import threading
from typing import TYPE_CHECKING, Any

from ._address import DEFAULT_HOST, DEFAULT_PORT, Address, parse_address
from ._tracer import TelemetryTracer

if TYPE_CHECKING:
    from .._machine import Machine
    from ._exporter import Exporter, ExporterOptions

__all__ = [
    "DEFAULT_HOST",
    "DEFAULT_PORT",
    "ENV_ADDR",
    "Address",
    "TelemetryTracer",
    "attach",
    "attach_from_env",
    "close",
    "detach",
    "flush",
    "flush_sync",
    "parse_address",
    "stats",
]

logger = logging.getLogger("asyncmachine.telemetry")

ENV_ADDR = "AM_DBG_ADDR"
"""The environment variable with the debugger address for :func:`attach_from_env`."""

_background: asyncio.AbstractEventLoop | None = None
_background_lock = threading.Lock()
_env_errors: set[str] = set()


def _background_loop() -> asyncio.AbstractEventLoop:
    """Return the loop of the telemetry thread, starting it on first use."""
    global _background
    with _background_lock:
        if _background is not None and not _background.is_closed():
            return _background
        loop = asyncio.new_event_loop()
        thread = threading.Thread(
            target=loop.run_forever, name="asyncmachine-telemetry", daemon=True
        )
        thread.start()
        _background = loop
        atexit.register(_flush_at_exit, loop)
        logger.debug("telemetry thread started")
        return loop


def _flush_at_exit(loop: asyncio.AbstractEventLoop) -> None:
    if loop.is_closed() or not loop.is_running():
        return
    flush_sync(timeout=2.0)


def attach(
    mach: Machine,
    address: str | Address | None = None,
    *,
    checks: bool = False,
    options: ExporterOptions | None = None,
) -> TelemetryTracer:
    """Send the transitions of `mach` to the debugger at `address`.

    A machine is attached at most once per address; attaching again returns the
    existing tracer. The exporter runs on the running asyncio loop, or on a
    background thread when there is none.

    Args:
        mach: the machine.
        address: ``host:port``, ``tcp://host:port`` or ``ws://host:port/path``;
            default: ``AM_DBG_ADDR``, else 127.0.0.1:6831.
        checks: also send dry runs (``can_add``, ``can_remove``).
        options: outbox size, batching and timeouts of a new exporter; an
            exporter already running for the address keeps its options.

    Raises:
        ValueError: the address is invalid.
        ImportError: a WebSocket address in CPython without aiohttp installed.
    """
    from ._exporter import ExporterOptions, get_exporter

    if address is None:
        address = os.environ.get(ENV_ADDR) or f"{DEFAULT_HOST}:{DEFAULT_PORT}"
    parsed = address if isinstance(address, Address) else parse_address(address)
    if parsed.is_websocket and sys.platform != "emscripten":
        if importlib.util.find_spec("aiohttp") is None:
            raise ImportError(
                f"telemetry to {parsed} needs aiohttp for WebSocket addresses; "
                f"install it with: pip install 'asyncmachine[rpc]'"
            )
    for tracer in mach.tracers():
        if isinstance(tracer, TelemetryTracer) and tracer.address == parsed:
            return tracer
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        loop = _background_loop()
    exporter = get_exporter(parsed, loop, options or ExporterOptions())
    tracer = TelemetryTracer(exporter, checks=checks)
    mach.add_tracer(tracer)
    return tracer


def attach_from_env(mach: Machine) -> TelemetryTracer | None:
    """Attach `mach` to the debugger named by ``AM_DBG_ADDR``, if it is set.

    Never raises: an error (an invalid address, a missing rpc dependency) is
    logged once per address and the machine runs without telemetry.
    """
    value = os.environ.get(ENV_ADDR, "").strip()
    if not value or value in ("0", "false", "no"):
        return None
    try:
        return attach(mach, value)
    except Exception as err:
        if value not in _env_errors:
            _env_errors.add(value)
            logger.warning(
                "%s=%r: telemetry disabled for this process: %s", ENV_ADDR, value, err
            )
        return None


def detach(mach: Machine, address: str | Address | None = None) -> None:
    """Stop sending the transitions of `mach` (to `address`, or to every address)."""
    parsed = None
    if address is not None:
        parsed = address if isinstance(address, Address) else parse_address(address)
    for tracer in mach.tracers():
        if isinstance(tracer, TelemetryTracer):
            if parsed is None or tracer.address == parsed:
                mach.remove_tracer(tracer)
                tracer.exporter.unregister(mach.id)


def _open_exporters() -> list[Exporter]:
    try:
        from ._exporter import exporters
    except ImportError:
        return []
    return exporters()


async def flush(timeout: float = 5.0) -> bool:
    """Wait until every exporter sent what is queued; False if one timed out."""
    current = asyncio.get_running_loop()
    results = []
    for exporter in _open_exporters():
        if exporter.loop is current:
            results.append(await exporter.flush(timeout))
        else:
            future = asyncio.run_coroutine_threadsafe(
                exporter.flush(timeout), exporter.loop
            )
            results.append(await asyncio.wrap_future(future))
    return all(results)


def flush_sync(timeout: float = 5.0) -> bool:
    """Wait for the exporters of the background thread, from synchronous code."""
    results = []
    for exporter in _open_exporters():
        if exporter.loop is not _background:
            continue
        future = asyncio.run_coroutine_threadsafe(
            exporter.flush(timeout), exporter.loop
        )
        try:
            results.append(future.result(timeout + 1.0))
        except TimeoutError:
            results.append(False)
    return all(results)


async def close(timeout: float = 2.0) -> None:
    """Flush and close the exporters of the running loop and the background thread."""
    current = asyncio.get_running_loop()
    for exporter in _open_exporters():
        if exporter.loop is current:
            await exporter.aclose(timeout)
        elif exporter.loop is _background:
            future = asyncio.run_coroutine_threadsafe(
                exporter.aclose(timeout), exporter.loop
            )
            await asyncio.wrap_future(future)


def stats() -> list[dict[str, Any]]:
    """Return the counters of every open exporter (see ``Exporter.stats``)."""
    return [exporter.stats() for exporter in _open_exporters()]
