"""Benchmark of the distributed demo: page load to a ready bar, message round trip.

Figures, with am-demo's server in this process and the bar notebook in headless
Chromium (/usr/bin/chromium, or $AM_CHROMIUM), all on 127.0.0.1:

- ``cold_ready_s``: from opening the page URL with a new browser profile until
  the page's bar machine is connected to server-foo (JupyterLab, the Pyodide
  kernel, the notebook's cells, the WebSocket and both sync handshakes);
- ``warm_ready_s``: the same after a reload in the same profile, so the
  browser's HTTP cache and compiled WebAssembly are warm;
- ``cold_ui_s`` and ``warm_ui_s``: the part of those loads until the notebook's
  cells are on screen (JupyterLab without the kernel), so the rest is the
  Pyodide kernel's start, the cells and the connection;
- ``round_trip_ms``: in the page, ``await foo.add("Msg", ...)`` on bar's mirror of
  server-foo: the mutation goes to server-foo, runs its handlers (which print
  the message) and the reply's clock diff is applied to the mirror;
- ``server_round_trip_ms``: the reverse, ``await mirror.add("Msg", ...)`` on the
  server's mirror of the page's bar machine.

Usage::

    python -m bench.demo                 # 3 cold and 3 warm loads, 100 round trips
    python -m bench.demo --runs 1 --round-trips 20

The site is built first when it is missing or out of date. Progress goes to
stderr, a table to stdout, and the last stdout line is one JSON object. The
exit status is 0 when every run finished, also when a goal is missed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import json
import logging
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from asyncmachine.demo._site import SiteError, ensure_site
from asyncmachine.demo.headless import (
    CHROMIUM_ARGS,
    SinkProxy,
    is_external,
    run_all_cells,
)
from asyncmachine.demo.server import DemoServer, ServerConfig
from asyncmachine.demo.transcript import Transcript

log = logging.getLogger("asyncmachine.bench")

GOALS = {"warm_ready_s_max": 10.0, "round_trip_ms_max": 20.0}
# Bounds one page load; a cold load took about 15 s on a 2-core machine.
LOAD_TIMEOUT_MS = 300_000
STATUS_JS = """
() => {
  const node = document.querySelector('.am-status');
  return node !== null && node.textContent.includes('connected to server-foo')
    ? node.textContent : null;
}
"""
# Runs in the page's kernel after the notebook: round trips on bar's mirror of
# foo, printed as one JSON line that the benchmark reads from the output.
ROUND_TRIP_CELL = """import json, time
_samples = []
for _i in range({warmup} + {count}):
    _start = time.perf_counter()
    await page.foo.add("Msg", {{"msg": f"bench {{_i}}"}})
    _samples.append((time.perf_counter() - _start) * 1000)
print("BENCH " + json.dumps(_samples[{warmup}:]))"""
OUTPUT_JS = """
() => [...document.querySelectorAll('.jp-OutputArea-output')]
  .map((node) => node.textContent).filter((text) => text.startsWith('BENCH '))
"""


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.demo",
        description="Page load to a ready bar machine, and message round trips, "
        "of the am-demo page in headless Chromium.",
    )
    parser.add_argument(
        "--runs",
        type=int,
        default=3,
        help="cold loads, and as many warm ones (default: 3)",
    )
    parser.add_argument(
        "--round-trips",
        type=int,
        default=100,
        help="timed round trips each way, after 10 untimed ones (default: 100)",
    )
    parser.add_argument(
        "--chromium",
        type=Path,
        default=Path(os.environ.get("AM_CHROMIUM", "/usr/bin/chromium")),
        help="Chromium executable (default: $AM_CHROMIUM or /usr/bin/chromium)",
    )
    return parser.parse_args(argv)


def summary(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    return {
        "median": round(statistics.median(ordered), 3),
        "p90": round(ordered[min(len(ordered) - 1, int(0.9 * len(ordered)))], 3),
        "min": round(ordered[0], 3),
        "max": round(ordered[-1], 3),
        "n": len(ordered),
    }


class Bench:
    """One server, a sink proxy and the measurements."""

    def __init__(self, site: Path, args: argparse.Namespace) -> None:
        self.args = args
        self.repl_dir = Path(tempfile.mkdtemp(prefix="bench-demo-repl-"))
        config = ServerConfig(
            site_dir=site,
            repl_dir=self.repl_dir,
            token="bench-demo",
            port=0,
            # No hellos and no boredom during the measurements.
            hello_every=3600.0,
            hello_limit=0,
            bored_after=3600.0,
        )
        self.server = DemoServer(config, Transcript(io.StringIO()))
        self.proxy = SinkProxy()
        self.external: list[str] = []
        self.cold: list[float] = []
        self.warm: list[float] = []
        self.cold_ui: list[float] = []
        self.warm_ui: list[float] = []
        self.round_trips: list[float] = []
        self.server_round_trips: list[float] = []

    @contextlib.asynccontextmanager
    async def browser(self) -> AsyncIterator[Any]:
        from playwright.async_api import async_playwright

        async def abort(route: Any) -> None:
            self.external.append(route.request.url)
            await route.abort("blockedbyclient")

        with tempfile.TemporaryDirectory(prefix="bench-demo-chromium-") as profile:
            async with async_playwright() as playwright:
                context = await playwright.chromium.launch_persistent_context(
                    profile,
                    executable_path=str(self.args.chromium),
                    headless=True,
                    args=[
                        *CHROMIUM_ARGS,
                        f"--proxy-server=http://127.0.0.1:{self.proxy.port}",
                    ],
                    viewport={"width": 1280, "height": 900},
                )
                try:
                    await context.route(is_external, abort)
                    yield context
                finally:
                    await context.close()

    async def load(self, page: Any, *, reload: bool) -> tuple[float, float, str]:
        """Open (or reload) the page and run the notebook.

        Returns the seconds until the notebook showed, the seconds until the
        bar machine was ready, and its id.
        """
        started = time.perf_counter()
        if reload:
            await page.reload()
        else:
            await page.goto(self.server.page_url)
        await page.wait_for_selector(
            ".jp-Notebook .jp-CodeCell", timeout=LOAD_TIMEOUT_MS
        )
        ui_seconds = time.perf_counter() - started
        await run_all_cells(page)
        status = await page.wait_for_function(
            STATUS_JS, polling=50, timeout=LOAD_TIMEOUT_MS
        )
        seconds = time.perf_counter() - started
        bar_id = (await status.json_value()).split(":", 1)[0]
        await self.server.wait_page(bar_id)
        return ui_seconds, seconds, bar_id

    async def page_round_trips(self, page: Any) -> list[float]:
        await page.locator(".jp-CodeCell").last.click()
        await page.keyboard.press("Escape")
        await page.keyboard.press("b")
        await page.keyboard.press("Enter")
        await page.keyboard.insert_text(
            ROUND_TRIP_CELL.format(warmup=10, count=self.args.round_trips)
        )
        await page.keyboard.press("Shift+Enter")
        handle = await page.wait_for_function(
            f"() => {{ const found = ({OUTPUT_JS})(); "
            "return found.length ? found[0] : null; }",
            polling=100,
            timeout=LOAD_TIMEOUT_MS,
        )
        text = await handle.json_value()
        return json.loads(text.removeprefix("BENCH ").strip())

    async def server_round_trip(self, bar_id: str) -> list[float]:
        link = self.server.pages[bar_id]
        assert link.mirror is not None
        samples = []
        for index in range(10 + self.args.round_trips):
            started = time.perf_counter()
            await link.mirror.add("Msg", {"msg": f"server bench {index}"})
            samples.append((time.perf_counter() - started) * 1000)
        return samples[10:]

    async def run(self) -> None:
        await self.server.start()
        await self.proxy.start()
        try:
            for number in range(1, self.args.runs + 1):
                async with self.browser() as context:
                    page = (
                        context.pages[0] if context.pages else await context.new_page()
                    )
                    ui_seconds, seconds, bar_id = await self.load(page, reload=False)
                    self.cold_ui.append(ui_seconds)
                    self.cold.append(seconds)
                    log.info(
                        "run %d: cold load to ready %.2f s (notebook shown %.2f s)",
                        number,
                        seconds,
                        ui_seconds,
                    )
                    ui_seconds, seconds, bar_id = await self.load(page, reload=True)
                    self.warm_ui.append(ui_seconds)
                    self.warm.append(seconds)
                    log.info(
                        "run %d: warm load to ready %.2f s (notebook shown %.2f s)",
                        number,
                        seconds,
                        ui_seconds,
                    )
                    if number == 1:
                        self.round_trips = await self.page_round_trips(page)
                        self.server_round_trips = await self.server_round_trip(bar_id)
                        log.info(
                            "round trips: page median %.2f ms, server median %.2f ms",
                            statistics.median(self.round_trips),
                            statistics.median(self.server_round_trips),
                        )
        finally:
            await self.proxy.close()
            await self.server.stop()

    def figures(self) -> dict[str, Any]:
        external = self.external + [f"proxy: {t}" for t in self.proxy.targets]
        cold = summary(self.cold)
        warm = summary(self.warm)
        round_trip = summary(self.round_trips)
        return {
            "bench": "demo",
            "cold_ready_s": cold,
            "warm_ready_s": warm,
            "cold_ui_s": summary(self.cold_ui),
            "warm_ui_s": summary(self.warm_ui),
            "round_trip_ms": round_trip,
            "server_round_trip_ms": summary(self.server_round_trips),
            "goals": GOALS,
            "goals_met": {
                "warm_ready": warm["median"] <= GOALS["warm_ready_s_max"],
                "round_trip": round_trip["median"] <= GOALS["round_trip_ms_max"],
            },
            "external_requests": len(external),
            "machine": {
                "python": platform.python_version(),
                "cpus": os.cpu_count(),
                "platform": platform.platform(),
            },
        }


def print_table(figures: dict[str, Any]) -> None:
    rows = [
        ("cold load to ready", "s", figures["cold_ready_s"]),
        ("warm load to ready", "s", figures["warm_ready_s"]),
        ("cold load, notebook shown", "s", figures["cold_ui_s"]),
        ("warm load, notebook shown", "s", figures["warm_ui_s"]),
        ("round trip bar->foo->bar (page)", "ms", figures["round_trip_ms"]),
        ("round trip foo->bar->foo (server)", "ms", figures["server_round_trip_ms"]),
    ]
    print(f"{'figure':<36} {'median':>9} {'p90':>9} {'min':>9} {'max':>9} {'n':>4}")
    for name, unit, values in rows:
        print(
            f"{name + ' (' + unit + ')':<36} {values['median']:>9.3f} "
            f"{values['p90']:>9.3f} {values['min']:>9.3f} {values['max']:>9.3f} "
            f"{values['n']:>4}"
        )
    goals = json.dumps(figures["goals"])
    met = json.dumps(figures["goals_met"])
    print(f"goals: {goals}, met: {met}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(name)s: %(message)s")
    log.setLevel(logging.INFO)
    if args.runs < 1 or args.round_trips < 1:
        print(
            "bench.demo: --runs and --round-trips must be at least 1", file=sys.stderr
        )
        return 2
    if not args.chromium.is_file():
        print(
            f"bench.demo: Chromium not found at {args.chromium}: install it with "
            "`apt-get install chromium`, or set AM_CHROMIUM",
            file=sys.stderr,
        )
        return 1
    try:
        site = ensure_site(None)
    except SiteError as err:
        print(f"bench.demo: {err}", file=sys.stderr)
        return 1
    bench = Bench(site, args)
    asyncio.run(bench.run())
    figures = bench.figures()
    print_table(figures)
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
