"""Benchmark of the sync protocol: remote mutations, push sizes and fan-out.

Figures (all on 127.0.0.1):

- ``remote_mutation_p50_us`` / ``_p99_us``: ``await mirror.add`` or ``remove``
  of one state, executed by a source in another process, with the reply's diff
  applied to the mirror;
- ``bare_rpyc_p50_us`` / ``_p99_us``: ``await conn.call("noop")`` of a trivial
  exposed method of the same server, through the same driver and TCP
  transport, measured in alternating batches with the mutations;
- ``bytes_per_change``: bytes on the socket per pushed change of one state,
  both directions and rpyc framing included (the push and rpyc's reply to it);
- ``payload_bytes_per_change``: the encoded clock diff inside that push;
- ``fanout_100_ms``: one source and 100 mirrors over TCP in this process, pushes
  at once (``push_interval=0``): time from one source mutation until every
  mirror shows it (median of the repeats).

Usage::

    python -m bench.rpc             # a table on stdout
    python -m bench.rpc --json      # and the figures as JSON on the last line
    python -m bench.rpc --quick     # small numbers, for a smoke run

Progress goes to stderr. Latency figures are noisy on a shared machine: compare
figures of one run with each other, not with another machine's.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import platform
import statistics
import subprocess
import sys
import time
from typing import Any

import asyncmachine as am
from asyncmachine import rpc

log = logging.getLogger("asyncmachine.bench")

SCHEMA = {
    "Start": am.State(add=["Ready"]),
    "Ready": am.State(require=["Start"]),
    "Ping": am.State(),
    "Msg": am.State(multi=True),
    "A": am.State(),
    "B": am.State(remove=["A"]),
    "C": am.State(),
    "D": am.State(),
}
GOALS = {
    "p50_ratio_max": 1.3,
    "bytes_per_change_max": 160,
    "payload_bytes_per_change_max": 16,
    "fanout_100_ms_max": 50.0,
}
FULL = {"mutations": 5000, "batches": 20, "changes": 500, "fanout_repeats": 20}
QUICK = {"mutations": 400, "batches": 4, "changes": 50, "fanout_repeats": 3}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.rpc",
        description="Measure remote mutations, push sizes and fan-out of mirrors.",
    )
    parser.add_argument(
        "--json", action="store_true", help="print the figures as JSON last"
    )
    parser.add_argument("--quick", action="store_true", help="small numbers")
    parser.add_argument(
        "--mutations",
        type=int,
        help=f"timed calls of each kind (default {FULL['mutations']})",
    )
    parser.add_argument(
        "--fanout", type=int, default=100, help="mirrors of the fan-out (default 100)"
    )
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


# -- the source process ----------------------------------------------------------------


class Noop:
    """The plain methods of the benchmark's server: one that does nothing."""

    def exposed_noop(self) -> None:
        return None


async def serve_until_stdin_closes() -> None:
    mach = am.Machine(SCHEMA, id="bench-source")
    mach.add("Start")
    server = await rpc.serve_source(mach, plain_service=lambda peer: Noop())
    print(f"PORT {server.port}", flush=True)
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, sys.stdin.read)
    await server.close()


def start_server() -> tuple[subprocess.Popen[str], int]:
    child = subprocess.Popen(
        [sys.executable, "-m", "bench.rpc", "--serve"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None
    line = child.stdout.readline()
    if not line.startswith("PORT "):
        child.kill()
        raise RuntimeError(f"the benchmark's source process did not start: {line!r}")
    return child, int(line.split()[1])


# -- latency ---------------------------------------------------------------------------


def percentile(samples: list[float], fraction: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(len(ordered) * fraction))]


async def measure_latency(port: int, mutations: int, batches: int) -> dict[str, Any]:
    mirror = await rpc.connect_mirror(f"127.0.0.1:{port}", id="bench-mirror")
    conn = await rpc.connect_tcp("127.0.0.1", port)
    clock = time.perf_counter
    remote: list[float] = []
    bare: list[float] = []
    per_batch = max(1, mutations // batches)
    try:
        for _ in range(200):
            await conn.call("noop")
            await mirror.add("Ping")
            await mirror.remove("Ping")
        for batch in range(batches):
            for _ in range(per_batch):
                start = clock()
                await conn.call("noop")
                bare.append(clock() - start)
            for i in range(per_batch):
                start = clock()
                if i % 2:
                    await mirror.remove("Ping")
                else:
                    await mirror.add("Ping")
                remote.append(clock() - start)
            log.info("latency batch %d/%d", batch + 1, batches)
        in_sync = mirror.is_active("Start", "Ready")
    finally:
        await mirror.close()
        await conn.aclose()
    return {
        "remote_mutation_p50_us": percentile(remote, 0.5) * 1e6,
        "remote_mutation_p99_us": percentile(remote, 0.99) * 1e6,
        "bare_rpyc_p50_us": percentile(bare, 0.5) * 1e6,
        "bare_rpyc_p99_us": percentile(bare, 0.99) * 1e6,
        "mirror_in_sync": in_sync,
    }


# -- bytes per change ------------------------------------------------------------------


class CountingRelay:
    """A TCP relay that counts the bytes passing in each direction."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.to_client = 0
        self.to_server = 0
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> int:
        self._server = await asyncio.start_server(self._relay, "127.0.0.1", 0)
        return self._server.sockets[0].getsockname()[1]

    async def _relay(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        up_reader, up_writer = await asyncio.open_connection(
            "127.0.0.1", self.target_port
        )
        pumps = [
            asyncio.create_task(self._pump(reader, up_writer, "to_server")),
            asyncio.create_task(self._pump(up_reader, writer, "to_client")),
        ]
        self._tasks.update(pumps)
        await asyncio.gather(*pumps, return_exceptions=True)

    async def _pump(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, counter: str
    ) -> None:
        try:
            while data := await reader.read(65536):
                setattr(self, counter, getattr(self, counter) + len(data))
                writer.write(data)
                await writer.drain()
        except ConnectionError:
            pass
        writer.close()

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()


async def measure_bytes(changes: int) -> dict[str, Any]:
    mach = am.Machine(SCHEMA, id="bench-bytes")
    server = await rpc.serve_source(mach, push_interval=0, plain_service=None)
    relay = CountingRelay(server.port)
    port = await relay.start()
    payloads: list[int] = []

    def record(session: Any, update: Any) -> Any:
        payloads.append(len(update.encode_binary()))
        return update

    mirror = await rpc.connect_mirror(f"127.0.0.1:{port}", id="bench-bytes-mirror")
    try:
        server.source.push_filter = record
        # A first change, so the notification path is warm, then the count.
        mach.add("Ping")
        await mirror.when("Ping")
        mach.remove("Ping")
        await mirror.when_not("Ping")
        await asyncio.sleep(0.05)
        payloads.clear()
        before = relay.to_client + relay.to_server
        for i in range(changes):
            if i % 2:
                mach.remove("Ping")
                await mirror.when_not("Ping")
            else:
                mach.add("Ping")
                await mirror.when("Ping")
        # rpyc's replies to the last pushes may still be on their way.
        await asyncio.sleep(0.05)
        total = relay.to_client + relay.to_server - before
    finally:
        await mirror.close()
        await server.close()
        await relay.close()
    return {
        "bytes_per_change": total / changes,
        "payload_bytes_per_change": statistics.fmean(payloads),
        "pushes_per_change": len(payloads) / changes,
    }


# -- fan-out ---------------------------------------------------------------------------


async def measure_fanout(count: int, repeats: int) -> dict[str, Any]:
    mach = am.Machine(SCHEMA, id="bench-fanout")
    server = await rpc.serve_source(mach, push_interval=0, plain_service=None)
    mirrors = [
        await rpc.connect_mirror(server.addr, id=f"bench-fanout-{i}")
        for i in range(count)
    ]
    times = []
    try:
        for repeat in range(repeats + 1):
            active = mach.is_active("Ping")
            start = time.perf_counter()
            if active:
                mach.remove("Ping")
                await asyncio.gather(*(m.when_not("Ping") for m in mirrors))
            else:
                mach.add("Ping")
                await asyncio.gather(*(m.when("Ping") for m in mirrors))
            if repeat:
                times.append(time.perf_counter() - start)
        in_sync = all(m.clock() == mach.clock() for m in mirrors)
    finally:
        for mirror in mirrors:
            await mirror.close()
        await server.close()
    return {"fanout_ms": statistics.median(times) * 1000, "fanout_in_sync": in_sync}


# -- main ------------------------------------------------------------------------------


async def run(args: argparse.Namespace) -> dict[str, Any]:
    sizes = dict(QUICK if args.quick else FULL)
    if args.mutations:
        sizes["mutations"] = args.mutations
    child, port = start_server()
    try:
        log.info("latency: %d calls of each kind", sizes["mutations"])
        figures = await measure_latency(port, sizes["mutations"], sizes["batches"])
    finally:
        assert child.stdin is not None
        child.stdin.close()
        child.wait(timeout=10)
    log.info("bytes per change: %d changes", sizes["changes"])
    figures.update(await measure_bytes(sizes["changes"]))
    log.info("fan-out: %d mirrors", args.fanout)
    fanout = await measure_fanout(args.fanout, sizes["fanout_repeats"])
    figures[f"fanout_{args.fanout}_ms"] = fanout["fanout_ms"]
    figures["fanout_in_sync"] = fanout["fanout_in_sync"]
    figures["p50_ratio"] = (
        figures["remote_mutation_p50_us"] / figures["bare_rpyc_p50_us"]
    )
    return figures


def print_table(figures: dict[str, Any]) -> None:
    for key, value in figures.items():
        text = f"{value:.1f}" if isinstance(value, float) else str(value)
        print(f"{key:28} {text}")
    print(
        "# env "
        + json.dumps(
            {
                "python": platform.python_version(),
                "platform": platform.platform(),
                "cpu_count": os.cpu_count(),
            }
        )
    )
    print("# goals " + json.dumps(GOALS))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.serve:
        asyncio.run(serve_until_stdin_closes())
        return 0
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    logging.getLogger("asyncmachine.rpc").setLevel(logging.WARNING)
    logging.getLogger("asyncmachine.repl").setLevel(logging.WARNING)
    figures = asyncio.run(run(args))
    print_table(figures)
    if args.json:
        print(
            json.dumps(
                {
                    k: round(v, 2) if isinstance(v, float) else v
                    for k, v in figures.items()
                },
                sort_keys=True,
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
