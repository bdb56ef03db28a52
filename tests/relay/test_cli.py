"""The am-relay command, run as ``python -m asyncmachine.relay`` in a subprocess."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import stat
import subprocess
import sys

import aiohttp

from asyncmachine import __version__
from asyncmachine.relay import serve_tunnel
from tests.relay.helpers import LOCALHOST, MACHINE_ID, WAIT_SECONDS, BrowserService

COMMAND = [sys.executable, "-m", "asyncmachine.relay"]
# Bounds a hung process; the first start imports aiohttp and rpyc.
PROCESS_SECONDS = 60


async def start_cli(*args):
    return await asyncio.create_subprocess_exec(
        *COMMAND,
        *args,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


async def read_urls(process):
    """Read the two lines the command prints at start: its URL and the page URL."""
    first = await asyncio.wait_for(process.stdout.readline(), PROCESS_SECONDS)
    second = await asyncio.wait_for(process.stdout.readline(), PROCESS_SECONDS)
    if not first:
        stderr = await process.stderr.read()
        raise AssertionError(f"am-relay printed nothing; stderr: {stderr.decode()}")
    return first.decode().strip(), second.decode().strip()


def test_cli_version_and_help():
    version = subprocess.run(
        [*COMMAND, "--version"], capture_output=True, text=True, check=False
    )
    help_text = subprocess.run(
        [*COMMAND, "--help"], capture_output=True, text=True, check=False
    )
    assert version.returncode == 0
    assert version.stdout.strip() == f"am-relay {__version__}"
    assert help_text.returncode == 0
    for option in ("--listen", "--site", "--token", "--token-file", "--dial"):
        assert option in help_text.stdout
    assert "--tunnel-listen" in help_text.stdout
    assert "--repl-dir" in help_text.stdout


def test_cli_serves_and_stops_on_sigterm(tmp_path):
    site = tmp_path / "site"
    site.mkdir()
    (site / "index.html").write_text("<html>page</html>")
    repl_dir = tmp_path / "repl"
    token_file = tmp_path / "token"
    address_file = repl_dir / f"{MACHINE_ID}.addr"

    async def scenario():
        process = await start_cli(
            "--listen",
            f"{LOCALHOST}:0",
            "--site",
            str(site),
            "--repl-dir",
            str(repl_dir),
            "--token-file",
            str(token_file),
        )
        try:
            listening_line, page_line = await read_urls(process)
            url = listening_line.rsplit(" ", 1)[1]
            token = token_file.read_text().strip()
            async with aiohttp.ClientSession() as session:
                async with session.get(f"{url}/index.html") as response:
                    page = await response.text()
            tunnel = await serve_tunnel(
                url, token, MACHINE_ID, BrowserService, min_backoff=0.05
            )
            try:
                await asyncio.wait_for(tunnel.wait_listening(), WAIT_SECONDS)
                file_while_running = address_file.exists()
                process.send_signal(signal.SIGTERM)
                returncode = await asyncio.wait_for(process.wait(), PROCESS_SECONDS)
            finally:
                await tunnel.close()
            stderr = (await process.stderr.read()).decode()
            return (
                listening_line,
                page_line,
                url,
                token,
                page,
                file_while_running,
                returncode,
                stderr,
            )
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()

    (
        listening_line,
        page_line,
        url,
        token,
        page,
        file_while_running,
        returncode,
        stderr,
    ) = asyncio.run(scenario())
    assert listening_line.startswith(f"am-relay {__version__} listening on http://")
    assert not url.endswith(":0")
    assert page_line == f"open {url}/?token={token}"
    assert page == "<html>page</html>"
    assert stat.S_IMODE(os.stat(token_file).st_mode) == 0o600
    assert file_while_running
    assert returncode == 0
    assert not address_file.exists()
    assert "stopped" in stderr
    assert token not in stderr


def test_cli_stops_on_sigint():
    async def scenario():
        process = await start_cli("--listen", f"{LOCALHOST}:0", "--token", "t0k")
        try:
            await read_urls(process)
            process.send_signal(signal.SIGINT)
            return await asyncio.wait_for(process.wait(), PROCESS_SECONDS)
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()

    assert asyncio.run(scenario()) == 0


def test_cli_reports_port_in_use():
    with socket.socket() as occupied:
        occupied.bind((LOCALHOST, 0))
        occupied.listen()
        port = occupied.getsockname()[1]
        result = subprocess.run(
            [*COMMAND, "--listen", f"{LOCALHOST}:{port}"],
            capture_output=True,
            text=True,
            timeout=PROCESS_SECONDS,
            check=False,
        )
    assert result.returncode == 1
    assert f"cannot listen on {LOCALHOST}:{port}" in result.stderr
    assert "already in use" in result.stderr
    assert result.stdout == ""


def test_cli_rejects_bad_arguments(tmp_path):
    cases = [
        (["--listen", "nonsense"], "invalid address"),
        (["--listen", "0.0.0.0:0", "--token", ""], "must not be empty"),
        (["--site", str(tmp_path / "missing")], "not a directory"),
        (["--dial", "no-port"], "invalid address"),
    ]
    for args, message in cases:
        result = subprocess.run(
            [*COMMAND, *args],
            capture_output=True,
            text=True,
            timeout=PROCESS_SECONDS,
            check=False,
        )
        assert result.returncode == 2, args
        assert message in result.stderr, args
