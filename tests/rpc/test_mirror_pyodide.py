"""Mirrors inside Pyodide (under Node.js, JSPI off) against a CPython source.

The Pyodide side plays the browser of the example: it opens one WebSocket, offers
its ``browser-bar`` machine as a source over it, and mirrors ``server-foo`` over
the same socket. The CPython side mirrors ``browser-bar`` on that connection.
Skipped when Node.js or the npm package pyodide (installed by ``make install``)
is missing.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
from pathlib import Path
from typing import Any

import rpyc

import asyncmachine as am
from asyncmachine import rpc
from tests.rpc.test_pyodide_ws import PYODIDE_DIR, REPO_ROOT, RUN_SCRIPT, node_command

# Loading Pyodide takes a few seconds; this bounds a hung run, not a fast one.
RUN_TIMEOUT_SECONDS = 300

PYODIDE_CLIENT = '''
import asyncio
import json
import sys

import asyncmachine as am
from asyncmachine import rpc

BAR = {
    "Start": am.State(),
    "Msg": am.State(multi=True),
    "SubmitMsg": am.State(multi=True),
}


class BarHandlers:
    """The page submits a message: Msg goes to the mirror of foo, with the event."""

    def __init__(self):
        self.foo = None
        self.sent = []

    def SubmitMsgState(self, e):
        self.sent.append(self.foo.add("Msg", {"msg": "hi"}, event=e))


async def main(url):
    from pyodide.ffi import can_run_sync

    handlers = BarHandlers()
    bar = am.Machine(BAR, id="browser-bar-k3j", handlers=handlers)
    peer = await rpc.open_peer(
        url, sources=[rpc.StateSource(bar, push_interval=0)], name="browser"
    )
    foo = await peer.mirror(id="browser-bar-k3j", source_id="server-foo")
    handlers.foo = foo
    results = {"platform": sys.platform, "can_run_sync": can_run_sync()}

    bar.add("SubmitMsg")
    results["add"] = int(await asyncio.wait_for(handlers.sent[0], 30))
    results["foo_msg_after_reply"] = foo.is_active("Msg")
    await asyncio.wait_for(foo.when("Bored"), 30)
    # The server's mirror of bar saw SubmitMsg and sent Msg back.
    await asyncio.wait_for(bar.when("Msg"), 30)
    results["foo"] = foo.string_all()
    results["bar"] = bar.string_all()
    await peer.close()
    return json.dumps(results)
'''

FOO = {
    "Start": am.State(),
    "Msg": am.State(multi=True),
    "Bored": am.State(),
}


class FooHandlers:
    """The server machine gets bored right after each message, for the test."""

    def __init__(self) -> None:
        self.authors: list[str] = []

    def MsgState(self, e: am.Event) -> None:
        source = e.transition.mutation.source
        self.authors.append(source.mach_id if source else e.machine.id)
        e.machine.add("Bored")


class BarMirrorHandlers:
    """Network handlers of the server's mirror of the browser's machine."""

    def __init__(self) -> None:
        self.mirror: rpc.Mirror | None = None

    def SubmitMsgState(self, e: am.Event) -> None:
        assert self.mirror is not None
        self.mirror.add_ns("Msg")


def test_pyodide_mirror_and_source_share_websocket(tmp_path):
    command = node_command()
    rpyc_dir = Path(rpyc.__file__).parent
    client = tmp_path / "mirror_client.py"
    client.write_text(PYODIDE_CLIENT)

    async def scenario() -> tuple[Any, ...]:
        foo_handlers = FooHandlers()
        foo = am.Machine(FOO, id="server-foo", handlers=foo_handlers)
        bar_handlers = BarMirrorHandlers()
        tasks: list[asyncio.Task[Any]] = []

        async def mirror_bar(peer: rpc.Peer) -> None:
            bar_handlers.mirror = await peer.mirror(
                id="server-foo", source_id="browser-bar-k3j", handlers=bar_handlers
            )

        def on_peer(peer: rpc.Peer) -> None:
            tasks.append(asyncio.get_running_loop().create_task(mirror_bar(peer)))

        server = await rpc.serve_source(
            foo,
            transport="ws",
            path="/rpc",
            push_interval=0,
            plain_service=None,
            on_peer=on_peer,
        )
        try:
            process = await asyncio.create_subprocess_exec(
                *command,
                str(RUN_SCRIPT),
                str(PYODIDE_DIR),
                str(REPO_ROOT / "kernel"),
                str(rpyc_dir),
                str(client),
                server.addr,
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
            return (
                process.returncode,
                stdout.decode(),
                stderr.decode(),
                foo_handlers.authors,
                foo.clock(),
            )
        finally:
            await server.close()
            for task in tasks:
                task.cancel()

    returncode, stdout, stderr, authors, foo_clock = asyncio.run(scenario())
    assert returncode == 0, f"stdout:\n{stdout}\nstderr:\n{stderr}"
    results = json.loads(stdout.splitlines()[-1])
    assert results["platform"] == "emscripten"
    assert results["can_run_sync"] is False
    assert results["add"] == 0
    assert results["foo_msg_after_reply"] is True
    assert "Bored:1" in results["foo"]
    assert results["bar"].startswith("(Msg:1")
    assert authors == ["browser-bar-k3j"]
    assert foo_clock["Msg"] == 1
