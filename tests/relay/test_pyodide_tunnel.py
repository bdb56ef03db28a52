"""serve_tunnel in Pyodide under Node.js, reached by a stock rpyc client.

Node.js provides the WHATWG WebSocket that Pyodide reaches as ``js.WebSocket``,
as a browser would, but sends no Origin header, so this relay accepts requests
without one. Skipped when Node.js or the npm package pyodide (installed by
``make install``) is missing.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
from pathlib import Path

import pytest
import rpyc

from tests.relay.helpers import (
    LOCALHOST,
    STOCK_CONFIG,
    TOKEN,
    running_relay,
    wait_until,
)

REPO_ROOT = Path(__file__).resolve().parents[2]
PYODIDE_DIR = REPO_ROOT / "tests" / "pyodide" / "node_modules" / "pyodide"
PAGE_SCRIPT = Path(__file__).with_name("pyodide_page.mjs")
MACHINE_ID = "browser-bar-pyo"
# Loading Pyodide takes a few seconds; this bounds a hung run, not a fast one.
RUN_TIMEOUT_SECONDS = 300


def node_command() -> list[str]:
    node = shutil.which("node")
    if node is None:
        pytest.skip("node not found on PATH")
    if not (PYODIDE_DIR / "pyodide.mjs").is_file():
        pytest.skip(f"npm package pyodide not found at {PYODIDE_DIR}: run make install")
    probe = subprocess.run(
        [node, "-e", "process.exit(typeof WebSocket === 'undefined' ? 1 : 0)"],
        check=False,
    )
    # Node.js 20 has a global WebSocket only behind this flag; 22 has it always.
    return [node] if probe.returncode == 0 else [node, "--experimental-websocket"]


def stock_calls(port: int) -> tuple[int, str]:
    conn = rpyc.connect(LOCALHOST, port, config=STOCK_CONFIG)
    try:
        return conn.root.add(2, 3), conn.root.platform()
    finally:
        conn.close()


@pytest.mark.timeout(RUN_TIMEOUT_SECONDS + 60)
def test_pyodide_page_serves_stock_client(tmp_path):
    command = node_command()
    rpyc_dir = Path(rpyc.__file__).parent
    address_file = tmp_path / "repl" / f"{MACHINE_ID}.addr"

    async def scenario():
        async with running_relay(tmp_path, allow_no_origin=True) as relay:
            process = await asyncio.create_subprocess_exec(
                *command,
                str(PAGE_SCRIPT),
                str(PYODIDE_DIR),
                str(REPO_ROOT / "kernel"),
                str(rpyc_dir),
                relay.url,
                TOKEN,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
            )
            try:
                async with asyncio.timeout(RUN_TIMEOUT_SECONDS):
                    address = None
                    while address is None:
                        line = await process.stdout.readline()
                        if not line:
                            break
                        if line.startswith(b"{"):
                            address = json.loads(line)["listening"]
                    if address is None:
                        stderr = (await process.stderr.read()).decode()
                        raise AssertionError(f"no address printed; stderr:\n{stderr}")
                    file_text = address_file.read_text().strip()
                    port = int(address.rsplit(":", 1)[1])
                    calls = await asyncio.to_thread(stock_calls, port)
                    stdout, stderr = await process.communicate()
                await wait_until(lambda: not address_file.exists(), "file removed")
            finally:
                if process.returncode is None:
                    process.kill()
                    await process.wait()
            return address, file_text, calls, process.returncode, stdout, stderr

    address, file_text, calls, returncode, stdout, stderr = asyncio.run(scenario())
    assert returncode == 0, f"stdout:\n{stdout.decode()}\nstderr:\n{stderr.decode()}"
    assert file_text == address
    assert calls == (5, "emscripten")
    result = json.loads(stdout.decode().splitlines()[-1])
    assert result == {"closed": True, "listening": False}
