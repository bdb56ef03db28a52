"""The am-dbg command: a telemetry collector with a terminal UI, or headless."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys
from collections import deque
from importlib import metadata
from pathlib import Path
from typing import Any

from ..telemetry import DEFAULT_HOST, DEFAULT_PORT, parse_address
from ._collector import DEFAULT_MAX_RECORDS, Collector

__all__ = ["main"]

log = logging.getLogger("asyncmachine.dbg")


def _version() -> str:
    try:
        return metadata.version("asyncmachine")
    except metadata.PackageNotFoundError:
        return "unknown (not installed)"


def _positive(text: str) -> float:
    value = float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a number above 0, got {text}")
    return value


def _address(text: str) -> Any:
    try:
        address = parse_address(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None
    if address.is_websocket:
        raise argparse.ArgumentTypeError(
            f"expected HOST:PORT, got the WebSocket URL {text!r}; use --listen-ws"
        )
    return address


def _ws_address(text: str) -> Any:
    try:
        address = parse_address(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None
    if address.scheme != "ws":
        raise argparse.ArgumentTypeError(
            f"expected a ws://HOST:PORT/PATH URL, got {text!r} (am-dbg serves no "
            f"TLS; put wss:// behind a proxy)"
        )
    return address


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="am-dbg",
        description=(
            "Debugger for asyncmachine: receives telemetry from machines (set "
            "AM_DBG_ADDR=HOST:PORT in their processes) and shows their states and "
            "transitions in a terminal UI, or records them headless into a dump."
        ),
    )
    parser.add_argument(
        "--listen",
        type=_address,
        default=parse_address(f"{DEFAULT_HOST}:{DEFAULT_PORT}"),
        metavar="HOST:PORT",
        help=f"address to receive telemetry on; port 0 picks a free one "
        f"(default: {DEFAULT_HOST}:{DEFAULT_PORT})",
    )
    parser.add_argument(
        "--listen-ws",
        type=_ws_address,
        metavar="URL",
        help="also receive telemetry over WebSocket, e.g. "
        "ws://127.0.0.1:6832/dbg.ws (for machines in Pyodide or behind a relay)",
    )
    parser.add_argument(
        "--ws-origin",
        action="append",
        default=[],
        metavar="ORIGIN",
        help="a browser origin allowed to open the WebSocket, e.g. "
        "http://127.0.0.1:8000; repeat for more (default: none, so only "
        "clients that send no Origin header, which browsers always send)",
    )
    parser.add_argument(
        "--headless",
        action="store_true",
        help="run without the UI until Ctrl-C or SIGTERM; prints the address",
    )
    parser.add_argument(
        "--dump",
        metavar="FILE",
        help="write a dump file (gzip JSON lines) on exit and on --dump-every",
    )
    parser.add_argument(
        "--dump-every",
        type=_positive,
        metavar="S",
        help="also write the dump every S seconds (needs --dump)",
    )
    parser.add_argument(
        "--import",
        dest="import_path",
        metavar="FILE",
        help="load a dump file at start",
    )
    parser.add_argument(
        "--max-records",
        type=int,
        default=DEFAULT_MAX_RECORDS,
        metavar="N",
        help=f"transitions kept per machine, 0 for all "
        f"(default: {DEFAULT_MAX_RECORDS})",
    )
    parser.add_argument(
        "--log-level",
        default="INFO",
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        help="level of the log (default: INFO)",
    )
    parser.add_argument(
        "--log-file",
        metavar="FILE",
        help="write the log to FILE; default: stderr when headless, else only "
        "the last message in the UI's status line",
    )
    parser.add_argument("--version", action="version", version=_version())
    args = parser.parse_args(argv)
    if args.dump_every is not None and not args.dump:
        parser.error("--dump-every needs --dump FILE")
    if args.max_records < 0:
        parser.error(f"--max-records must be 0 or more, got {args.max_records}")
    return args


class _StatusHandler(logging.Handler):
    """Keeps the last log messages for the UI's status line."""

    def __init__(self) -> None:
        super().__init__()
        self.messages: deque[str] = deque(maxlen=50)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.messages.append(self.format(record))
        except Exception:
            self.handleError(record)


def _configure_logging(args: argparse.Namespace) -> _StatusHandler | None:
    fmt = "%(asctime)s %(name)s %(levelname)s %(message)s"
    if args.log_file:
        logging.basicConfig(level=args.log_level, filename=args.log_file, format=fmt)
        return None
    if args.headless:
        logging.basicConfig(level=args.log_level, stream=sys.stderr, format=fmt)
        return None
    handler = _StatusHandler()
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    root = logging.getLogger()
    root.setLevel(args.log_level)
    root.addHandler(handler)
    return handler


def _write_dump(collector: Collector, path: str) -> bool:
    try:
        collector.dump(path)
    except OSError as err:
        log.error("writing the dump %s failed: %s", path, err)
        return False
    return True


async def _dump_periodically(collector: Collector, path: str, every: float) -> None:
    while True:
        await asyncio.sleep(every)
        await asyncio.to_thread(_write_dump, collector, path)


async def _run(args: argparse.Namespace, status: _StatusHandler | None) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        # Signal handlers exist only on Unix event loops.
        with contextlib.suppress(NotImplementedError, AttributeError, RuntimeError):
            loop.add_signal_handler(signum, stop.set)

    collector = Collector(
        args.listen.host,
        args.listen.port,
        max_records=args.max_records or None,
        allowed_origins=args.ws_origin,
    )
    if args.import_path:
        try:
            collector.load(args.import_path)
        except (OSError, ValueError) as err:
            log.error("cannot import %s: %s", args.import_path, err)
            print(f"am-dbg: cannot import {args.import_path}: {err}", file=sys.stderr)
            return 1
    try:
        await collector.start()
    except OSError as err:
        log.error("cannot listen on %s: %s", args.listen, err)
        print(f"am-dbg: cannot listen on {args.listen}: {err}", file=sys.stderr)
        return 1
    if args.listen_ws is not None:
        ws = args.listen_ws
        try:
            await collector.serve_ws(ws.host, ws.port, path=ws.path.split("?", 1)[0])
        except OSError as err:
            await collector.stop()
            log.error("cannot listen on %s: %s", ws, err)
            print(f"am-dbg: cannot listen on {ws}: {err}", file=sys.stderr)
            return 1
    log.info("am-dbg %s started, listening on %s", _version(), collector.address)

    dumper = None
    if args.dump and args.dump_every:
        dumper = asyncio.ensure_future(
            _dump_periodically(collector, args.dump, args.dump_every)
        )
    status_code = 0
    try:
        if args.headless:
            print(f"am-dbg listening on {collector.address}", flush=True)
            if collector.ws_url is not None:
                print(f"am-dbg listening on {collector.ws_url}", flush=True)
            await stop.wait()
            log.info("stopping on a signal")
        else:
            from ._view import DebuggerView
            from .tui import run_tui

            view = DebuggerView(collector, dump_path=args.dump or "am-dbg.jsonl.gz")
            if status is not None:

                def show_last(_collector: Collector) -> None:
                    if status.messages:
                        view.message = status.messages[-1]

                collector.add_listener(show_last)
            await run_tui(view, stop)
    finally:
        if dumper is not None:
            dumper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await dumper
        await collector.stop()
        if args.dump and not _write_dump(collector, args.dump):
            status_code = 1
        log.info("am-dbg stopped")
    return status_code


def main(argv: list[str] | None = None) -> int:
    """Run am-dbg and return the exit status."""
    args = parse_args(argv)
    status = _configure_logging(args)
    if args.dump:
        Path(args.dump).parent.mkdir(parents=True, exist_ok=True)
    try:
        return asyncio.run(_run(args, status))
    except KeyboardInterrupt:
        return 130
