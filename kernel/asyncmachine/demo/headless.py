"""``am-demo --headless``: the whole scenario, run by headless Chromium.

The server runs in this process. Chromium opens the bar notebook from the
relay, runs it, types three messages and waits for a hello and for foo's
boredom. Then ``am-repl`` adds ``Msg`` to the page's machine, and the run checks
that the page shows it. Every step waits for its event (a line printed by
server-foo, a state, an element in the page), bounded by the run's timeout.

The browser must not leave 127.0.0.1: requests to other hosts are aborted and
recorded, and Chromium's own traffic goes through a local proxy that rejects
and records it. Chromium's services that the usual switches leave on are
pointed at a dead local address (see ``CHROMIUM_ARGS``).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import signal
import sys
import tempfile
import time
import urllib.parse
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .server import DemoServer, ServerConfig

__all__ = [
    "CHROMIUM_ARGS",
    "HeadlessOptions",
    "SinkProxy",
    "StepError",
    "is_external",
    "run_all_cells",
    "run_headless",
]

DEFAULT_CHROMIUM = "/usr/bin/chromium"
# Chromium's own services are pointed at this address, where no server is
# expected (port 9 is the discard port).
DEAD_URL = "http://127.0.0.1:9/"
CHROMIUM_ARGS = (
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    # Debian's Chromium 156 still contacts Google with the switches above: the
    # sign-in account check, an on-demand component update and autofill
    # queries for page forms. These switches send them to DEAD_URL.
    f"--gaia-url={DEAD_URL}",
    f"--component-updater=url-source={DEAD_URL}",
    f"--autofill-server-url={DEAD_URL}",
)
LOCAL_HOSTS = frozenset({"127.0.0.1"})
_NETWORK_SCHEMES = frozenset({"http", "https", "ws", "wss", "ftp"})
DEFAULT_MESSAGES = ("hi foo", "how are you?", "see you later")
REPL_MESSAGE = "hi from am-repl"

# Reports each new line of the message list to Python (amPageMessage), as the
# widget re-renders the list on every change.
_WATCH_MESSAGES_JS = """
() => {
  const list = document.querySelector('.am-messages');
  let reported = 0;
  const report = () => {
    const lines = [...list.querySelectorAll('.am-message')].map((n) => n.textContent);
    for (; reported < lines.length; reported++) window.amPageMessage(lines[reported]);
  };
  new MutationObserver(report).observe(list, { childList: true, subtree: true });
  report();
}
"""
_STATUS_JS = """
() => {
  const node = document.querySelector('.am-status');
  return node && node.textContent.includes('connected to server-foo')
    ? node.textContent : null;
}
"""


# Returns whether any code cell was queued or has run: its prompt is "[*]:"
# or "[N]:" instead of "[ ]:".
_CELLS_STARTED_JS = """
() => [...document.querySelectorAll('.jp-CodeCell .jp-InputArea-prompt')]
  .some((node) => /\\[(\\*|\\d+)\\]/.test(node.textContent))
"""
# Milliseconds to wait for the cells to start after clicking Run All Cells.
_RUN_ALL_WAIT_MS = 20_000
_RUN_ALL_ATTEMPTS = 5


async def run_all_cells(page: Any) -> None:
    """Run all cells of the open notebook through the Run menu, as a user would.

    A click that lands while JupyterLab still sets the notebook up can run
    nothing, which happened on a heavily loaded machine. So the click is
    repeated until some cell is queued, at most 5 times.

    Raises:
        TimeoutError: No cell started after the last attempt.
    """
    from playwright.async_api import TimeoutError as PlaywrightTimeoutError

    for _attempt in range(_RUN_ALL_ATTEMPTS):
        await page.locator(".lm-MenuBar-item", has_text=re.compile(r"^Run$")).click()
        await page.locator('.lm-Menu-item[data-command="runmenu:run-all"]').click()
        try:
            await page.wait_for_function(_CELLS_STARTED_JS, timeout=_RUN_ALL_WAIT_MS)
        except PlaywrightTimeoutError:
            continue
        return
    raise TimeoutError(
        f"no cell started after {_RUN_ALL_ATTEMPTS} clicks on Run > Run All Cells"
    )


@dataclass(frozen=True)
class HeadlessOptions:
    """Output files and limits of a headless run.

    Attributes:
        transcript: File for the transcript, or None.
        dump: File for the debugger's dump, or None.
        timeout: Seconds for the whole run.
        messages: The texts typed into the page.
        chromium: Chromium's executable; default ``$AM_CHROMIUM`` or
            /usr/bin/chromium.
    """

    transcript: Path | None = None
    dump: Path | None = None
    timeout: float = 300.0
    messages: tuple[str, ...] = DEFAULT_MESSAGES
    chromium: Path = field(
        default_factory=lambda: Path(os.environ.get("AM_CHROMIUM", DEFAULT_CHROMIUM))
    )


class StepError(Exception):
    """A step of the scenario failed; the message names the step."""

    def __init__(self, step: str, reason: str) -> None:
        super().__init__(f"step {step!r} failed: {reason}")
        self.step = step
        self.reason = reason


def is_external(url: str) -> bool:
    """Return whether a URL leaves 127.0.0.1 over the network."""
    parts = urllib.parse.urlsplit(url)
    return parts.scheme in _NETWORK_SCHEMES and parts.hostname not in LOCAL_HOSTS


class SinkProxy:
    """An HTTP proxy on 127.0.0.1 that rejects every request and records it.

    Chromium sends requests for hosts other than loopback through it, so a
    request that page interception misses (Chromium's own) is still rejected
    and counted.
    """

    def __init__(self) -> None:
        self.targets: list[str] = []
        self._server: asyncio.Server | None = None

    @property
    def port(self) -> int:
        assert self._server is not None
        return self._server.sockets[0].getsockname()[1]

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _handle(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        try:
            line = await asyncio.wait_for(reader.readline(), 5.0)
            # For example "CONNECT example.org:443 HTTP/1.1".
            self.targets.append(line.decode("latin-1").strip() or "<empty request>")
            writer.write(
                b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n"
                b"Connection: close\r\n\r\n"
            )
            await writer.drain()
        except (OSError, TimeoutError):
            self.targets.append("<unreadable request>")
        finally:
            writer.close()


class _Run:
    """One headless run: the server, the browser and the steps between them."""

    def __init__(self, config: ServerConfig, options: HeadlessOptions) -> None:
        self.config = config
        self.options = options
        self.server = DemoServer(config)
        self.transcript = self.server.transcript
        self.proxy = SinkProxy()
        self.blocked: list[str] = []
        self.requests = 0
        self.page_lines: list[str] = []
        self._page_changed = asyncio.Event()
        self.bar_id = ""
        self.page: Any = None
        self.step = "start"
        self._step_number = 0
        self._step_started = time.monotonic()

    # -- steps ------------------------------------------------------------------

    def begin(self, step: str) -> None:
        self._step_number += 1
        self.step = step
        self._step_started = time.monotonic()
        self.transcript.record("headless", f"step {self._step_number}: {step}")
        print(f"headless: [{self._step_number}] {step}", file=sys.stderr, flush=True)

    def done(self, detail: str = "") -> None:
        seconds = time.monotonic() - self._step_started
        suffix = f": {detail}" if detail else ""
        print(
            f"headless:     ok in {seconds:.1f} s{suffix}", file=sys.stderr, flush=True
        )

    def fail(self, reason: str) -> StepError:
        return StepError(self.step, reason)

    async def run(self) -> None:
        self.begin("start the server")
        await self.server.start()
        self.done(self.server.url)
        await self.proxy.start()
        async with self.browser() as context:
            await self.drive(context)
        self.begin("check the browser's requests")
        external = self.external_requests()
        if external:
            raise self.fail(
                f"{len(external)} requests to hosts other than 127.0.0.1: "
                f"{external[:10]}"
            )
        self.done(f"{self.requests} requests, all to 127.0.0.1")

    async def drive(self, context: Any) -> None:
        self.begin("load the page")
        page = context.pages[0] if context.pages else await context.new_page()
        self.page = page
        await page.expose_function("amPageMessage", self._on_page_message)
        await page.goto(self.server.page_url)
        await page.wait_for_selector(".jp-Notebook .jp-CodeCell", timeout=0)
        self.done()

        self.begin("run the notebook")
        await run_all_cells(page)
        status = await page.wait_for_function(_STATUS_JS, polling=200, timeout=0)
        text = await status.json_value()
        self.bar_id = text.split(":", 1)[0].strip()
        await self.server.wait_page(self.bar_id)
        await page.evaluate(_WATCH_MESSAGES_JS)
        self.done(f"{self.bar_id} connected to server-foo")

        self.begin("type three messages")
        box = page.locator(".am-input input")
        for message in self.options.messages:
            await box.fill(message)
            await box.press("Enter")
            await self.server.messages.wait_for(self._from_page(message))
            await self.wait_page_line(f"[{self.bar_id}] {message}")
        self.done("server-foo printed each one")

        self.begin("receive a hello")
        await self.wait_page_line("[server-foo] hello")
        self.done()

        self.begin("foo gets bored")
        assert self.server.foo is not None
        # The typed messages removed Bored; this waits for it to come back.
        await self.server.foo.when("Bored")
        await self.wait_page_line("foo is bored", after=f"[{self.bar_id}] ")
        self.done()

        self.begin("add Msg to the page with am-repl")
        await self.repl_add_msg()
        await self.wait_page_line(f"] {REPL_MESSAGE}")
        self.done()

    def _from_page(self, message: str) -> Callable[[str, str], bool]:
        """Return a predicate matching `message` printed with the page as author."""

        def matches(author: str, text: str) -> bool:
            return author == self.bar_id and text == message

        return matches

    # -- the browser ------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def browser(self) -> AsyncIterator[Any]:
        self.begin("start Chromium")
        try:
            from playwright.async_api import async_playwright
        except ImportError:
            raise self.fail(
                "the Python package playwright is missing: pip install "
                "'asyncmachine[demo]' (it drives the system's Chromium, so "
                "`playwright install` is not needed)"
            ) from None
        chromium = self.options.chromium
        if not chromium.is_file():
            raise self.fail(
                f"Chromium not found at {chromium}: install it with "
                "`apt-get install chromium` (Debian), or set AM_CHROMIUM"
            )
        with tempfile.TemporaryDirectory(prefix="am-demo-chromium-") as profile:
            async with async_playwright() as playwright:
                context = await playwright.chromium.launch_persistent_context(
                    profile,
                    executable_path=str(chromium),
                    headless=True,
                    args=[
                        *CHROMIUM_ARGS,
                        f"--proxy-server=http://127.0.0.1:{self.proxy.port}",
                    ],
                    viewport={"width": 1280, "height": 900},
                )
                try:
                    context.on("request", self._on_request)
                    await context.route(is_external, self._abort_external)
                    self.done(str(chromium))
                    yield context
                finally:
                    await context.close()

    def _on_request(self, request: Any) -> None:
        self.requests += 1

    async def _abort_external(self, route: Any) -> None:
        self.blocked.append(route.request.url)
        await route.abort("blockedbyclient")

    def external_requests(self) -> list[str]:
        """Return every request that went, or tried to go, beyond 127.0.0.1."""
        return self.blocked + [f"proxy: {target}" for target in self.proxy.targets]

    def _on_page_message(self, text: str) -> None:
        self.page_lines.append(text)
        self.transcript.record(self.bar_id or "page", f"shows {text}")
        self._page_changed.set()

    async def wait_page_line(self, text: str, *, after: str | None = None) -> None:
        """Wait until the page's message list has a line containing `text`.

        With `after`, only lines that follow the last line containing `after`
        count.
        """
        while True:
            lines = self.page_lines
            start = 0
            if after is not None:
                for index, line in enumerate(lines):
                    if after in line:
                        start = index + 1
            if any(text in line for line in lines[start:]):
                return
            self._page_changed.clear()
            await self._page_changed.wait()

    # -- am-repl ----------------------------------------------------------------

    async def repl_add_msg(self) -> None:
        address_file = self.config.repl_dir / f"{self.bar_id}.addr"
        # The relay writes the file once the page's tunnel listens.
        while not address_file.exists():
            await asyncio.sleep(0.1)
        command = [
            *_am_repl_command(),
            "-d",
            str(self.config.repl_dir),
            "--",
            "add",
            self.bar_id,
            "Msg",
            "--arg",
            f"msg={REPL_MESSAGE}",
        ]
        process = await asyncio.create_subprocess_exec(
            *command,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        output, _ = await process.communicate()
        text = output.decode("utf-8", "replace").strip()
        self.transcript.record("am-repl", f"exit {process.returncode}: {text[-200:]}")
        if process.returncode != 0:
            raise self.fail(
                f"{' '.join(command)} exited with {process.returncode}: {text[-500:]}"
            )


def _am_repl_command() -> list[str]:
    """Return the am-repl command: the console script, or ``python -m amrepl``."""
    script = shutil.which("am-repl")
    if script is not None:
        return [script]
    return [sys.executable, "-m", "amrepl"]


async def _finish(run: _Run, options: HeadlessOptions) -> list[str]:
    """Stop the server and write the files; return the errors."""
    errors = []
    try:
        await run.server.stop(dump_path=options.dump)
    except OSError as err:
        errors.append(f"cannot write the dump {options.dump}: {err}")
    await run.proxy.close()
    if options.transcript is not None:
        try:
            options.transcript.write_text(run.transcript.text(), encoding="utf-8")
        except OSError as err:
            errors.append(f"cannot write the transcript {options.transcript}: {err}")
    return errors


async def _with_deadline(run: _Run, work: Awaitable[None], seconds: float) -> None:
    try:
        async with asyncio.timeout(seconds):
            await work
    except TimeoutError:
        raise run.fail(f"the run did not finish within {seconds:g} s") from None


async def run_headless(config: ServerConfig, options: HeadlessOptions) -> int:
    """Run the scenario; return 0, or 1 after printing the failed step.

    SIGINT and SIGTERM stop the run, close the browser and the server, and
    return 130 or 143.
    """
    run = _Run(config, options)
    failure: str | None = None
    received: list[signal.Signals] = []
    work = asyncio.ensure_future(_with_deadline(run, run.run(), options.timeout))

    def interrupt(signal_number: signal.Signals) -> None:
        received.append(signal_number)
        work.cancel()

    loop = asyncio.get_running_loop()
    for signal_number in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(signal_number, interrupt, signal_number)
    try:
        await work
    except asyncio.CancelledError:
        if not received:
            raise
        failure = str(run.fail(f"stopped by {received[0].name}"))
    except StepError as err:
        failure = str(err)
    except OSError as err:
        failure = str(run.fail(str(err)))
    except Exception as err:
        # Playwright's errors (a crashed browser, a closed page) end up here.
        failure = str(run.fail(f"{type(err).__name__}: {err}"))
    finally:
        errors = await _finish(run, options)

    for error in errors:
        print(f"am-demo: {error}", file=sys.stderr)
    if failure is not None:
        print(f"am-demo --headless: {failure}", file=sys.stderr)
        if received:
            return 128 + int(received[0])
        return 1
    if errors:
        return 1
    print(
        f"am-demo --headless: the scenario passed with {run.bar_id} "
        f"({run.requests} browser requests, none to other hosts)",
        flush=True,
    )
    return 0
