"""Fixtures for the JupyterLite site tests: the built site, a local HTTP server,
a proxy that rejects and records every request to another host, and headless
Debian Chromium driven by Playwright.
"""

from __future__ import annotations

import functools
import os
import socketserver
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT

SITE_DIR = REPO_ROOT / "build" / "lite"
CACHE_DIR = REPO_ROOT / "build" / "lite-cache"
BUILD_COMMAND = (sys.executable, "-m", "asyncmachine.lite")
# A cold build downloads about 40 MB and creates a virtual environment. It took
# 56 s on a 2-core machine with a fast registry connection.
BUILD_TIMEOUT_SECONDS = 1200
CHROMIUM = Path(os.environ.get("AM_CHROMIUM", "/usr/bin/chromium"))
# Chromium's own services are pointed at this address, where no server is
# expected (port 9 is the discard port).
DEAD_URL = "http://127.0.0.1:9/"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    # Debian's Chromium 156 still contacts Google with the flags above: the
    # sign-in account check (accounts.google.com), an on-demand component
    # update (update.googleapis.com) and autofill queries for page forms
    # (content-autofill.googleapis.com). These switches send them to DEAD_URL.
    f"--gaia-url={DEAD_URL}",
    f"--component-updater=url-source={DEAD_URL}",
    f"--autofill-server-url={DEAD_URL}",
]


@pytest.fixture(scope="session")
def chromium_path() -> Path:
    """Return Debian's Chromium, or fail with the command that installs it."""
    if not CHROMIUM.is_file():
        pytest.fail(
            f"Chromium not found at {CHROMIUM}: install it with "
            "`apt-get install -y chromium` (Debian), or set AM_CHROMIUM to "
            "another Chromium executable"
        )
    return CHROMIUM


@pytest.fixture(scope="session")
def lite_site() -> Path:
    """Build the site into build/lite, or reuse it when its inputs are unchanged."""
    result = subprocess.run(
        [*BUILD_COMMAND, "--out", str(SITE_DIR), "--cache", str(CACHE_DIR)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=BUILD_TIMEOUT_SECONDS,
        check=False,
    )
    if result.returncode != 0:
        tail = "\n".join(result.stdout.splitlines()[-40:])
        pytest.fail(
            f"python -m asyncmachine.lite failed with exit code "
            f"{result.returncode}:\n{tail}"
        )
    return SITE_DIR


class SiteRequestHandler(SimpleHTTPRequestHandler):
    """Serves the site's files without logging each request to stderr."""

    extensions_map = {
        **SimpleHTTPRequestHandler.extensions_map,
        ".mjs": "text/javascript",
        ".js": "text/javascript",
        ".wasm": "application/wasm",
        ".json": "application/json",
    }

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture(scope="session")
def site_url(lite_site: Path) -> Iterator[str]:
    """Serve the site on 127.0.0.1 with a threaded HTTP server and yield its URL."""
    handler = functools.partial(SiteRequestHandler, directory=str(lite_site))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


class SinkProxy(socketserver.ThreadingTCPServer):
    """An HTTP proxy that rejects every request with 403 and records its target.

    Chromium sends requests to hosts other than loopback through it, so a
    request that page interception misses (a worker's, a WebSocket, Chromium's
    own) is still rejected and counted.
    """

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), SinkProxyHandler)
        self.targets: list[str] = []
        self.targets_lock = threading.Lock()


class SinkProxyHandler(socketserver.StreamRequestHandler):
    server: SinkProxy

    def handle(self) -> None:
        self.connection.settimeout(5)
        try:
            # For example "CONNECT example.org:443 HTTP/1.1" or
            # "GET http://example.org/ HTTP/1.1".
            request_line = self.rfile.readline(8192).decode("latin-1").strip()
        except OSError:
            request_line = "<no request line>"
        with self.server.targets_lock:
            self.server.targets.append(request_line)
        try:
            self.wfile.write(
                b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n"
                b"Connection: close\r\n\r\n"
            )
        except OSError:
            pass


@pytest.fixture
def sink_proxy() -> Iterator[SinkProxy]:
    proxy = SinkProxy()
    thread = threading.Thread(target=proxy.serve_forever, daemon=True)
    thread.start()
    try:
        yield proxy
    finally:
        proxy.shutdown()
        proxy.server_close()
        thread.join(timeout=10)
