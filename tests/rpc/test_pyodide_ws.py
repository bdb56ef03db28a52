"""The Pyodide WebSocket transport, run in Pyodide under Node.js against aiohttp.

Node.js provides the WHATWG WebSocket that Pyodide reaches as ``js.WebSocket``,
as a browser would. JSPI stays off, so the test also shows that the transport
does not need it. Skipped when Node.js or the npm package pyodide (installed by
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

from asyncmachine.rpc import serve_ws
from tests.rpc.helpers import LOCALHOST, Calculator

REPO_ROOT = Path(__file__).resolve().parents[2]
PYODIDE_DIR = REPO_ROOT / "tests" / "pyodide" / "node_modules" / "pyodide"
RUN_SCRIPT = REPO_ROOT / "tests" / "pyodide" / "run_module.mjs"
CLIENT_MODULE = Path(__file__).with_name("pyodide_client.py")
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


def test_pyodide_client_calls_both_directions():
    command = node_command()
    rpyc_dir = Path(rpyc.__file__).parent

    async def scenario():
        service = Calculator()
        server = await serve_ws(service, LOCALHOST, 0)
        try:
            process = await asyncio.create_subprocess_exec(
                *command,
                str(RUN_SCRIPT),
                str(PYODIDE_DIR),
                str(REPO_ROOT / "kernel"),
                str(rpyc_dir),
                str(CLIENT_MODULE),
                server.url,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
            )
            try:
                stdout, stderr = await asyncio.wait_for(
                    process.communicate(), RUN_TIMEOUT_SECONDS
                )
            except TimeoutError:
                process.kill()
                await process.wait()
                raise
            callback_result = service.callback_results.get_nowait()
            return process.returncode, stdout.decode(), stderr.decode(), callback_result
        finally:
            await server.close()

    returncode, stdout, stderr, callback_result = asyncio.run(scenario())
    assert returncode == 0, f"stdout:\n{stdout}\nstderr:\n{stderr}"
    results = json.loads(stdout.splitlines()[-1])
    assert results["platform"] == "emscripten"
    assert results["can_run_sync"] is False
    assert results["add"] == 5
    assert results["concurrent"] == [2 * i for i in range(20)]
    assert results["big_echo_length"] == 200_000
    assert results["callback"] == "scheduled"
    assert callback_result == 42
    assert results["sync_request_error"] is True
    assert results["closed"] is True
