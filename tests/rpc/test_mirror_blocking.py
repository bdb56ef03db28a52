"""The blocking mirror, used from a plain thread against a source on asyncio."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

import asyncmachine as am
from asyncmachine import rpc

SCHEMA = {
    "Start": am.State(add=["Ready"]),
    "Ready": am.State(require=["Start"]),
    "Bored": am.State(),
}


class SourceInLoop:
    """A source machine served on the test's loop, mutated from other threads."""

    def __init__(self, machine: am.Machine, loop: asyncio.AbstractEventLoop) -> None:
        self.machine = machine
        self.loop = loop

    def add(self, state: str) -> None:
        async def add() -> None:
            self.machine.add(state)

        asyncio.run_coroutine_threadsafe(add(), self.loop).result(10)


def run_script(script: Any) -> tuple[Any, am.Machine]:
    """Serve a source on this loop and run ``script(addr, source)`` in a thread."""

    async def scenario():
        source = am.Machine(SCHEMA, id="foo")
        server = await rpc.serve_source(source, push_interval=0, plain_service=None)
        handle = SourceInLoop(source, asyncio.get_running_loop())
        try:
            return await asyncio.to_thread(script, server.addr, handle), source
        finally:
            await server.close()

    return asyncio.run(scenario())


def test_blocking_mirror_mutates_and_reads():
    def script(addr: str, source: SourceInLoop) -> dict[str, Any]:
        with rpc.BlockingMirror(addr, id="script") as foo:
            result = foo.add("Start")
            return {
                "result": result,
                "active": foo.active_states(),
                "is_ready": foo.is_active("Ready"),
                "string": str(foo),
                "clock": foo.clock(),
            }

    seen, source = run_script(script)
    assert seen["result"] == am.Result.EXECUTED
    assert seen["active"] == ["Start", "Ready"]
    assert seen["is_ready"]
    assert seen["string"] == "(Start:1 Ready:1)"
    assert seen["clock"] == source.clock()


def test_blocking_mirror_waits_for_push():
    def script(addr: str, source: SourceInLoop) -> bool:
        with rpc.BlockingMirror(addr, id="script") as foo:
            with pytest.raises(TimeoutError):
                foo.when("Bored", timeout=0.01)
            source.add("Bored")
            foo.when("Bored", timeout=10)
            return foo.is_active("Bored")

    active, source = run_script(script)
    assert active is True
    assert source.tick("Bored") == 1


def test_blocking_mirror_rejects_bad_token():
    async def scenario():
        source = am.Machine(SCHEMA, id="foo")
        server = await rpc.serve_source(source, token="t0ken", plain_service=None)
        try:

            def script() -> None:
                with pytest.raises(rpc.AccessDeniedError):
                    rpc.BlockingMirror(server.addr, id="script", token="guess")

            await asyncio.to_thread(script)
        finally:
            await server.close()

    asyncio.run(scenario())
