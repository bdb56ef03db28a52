"""A process serving REPL endpoints, for tests that run am-repl as a subprocess.

``python -m tests.repl.serve_machines DIR ID...`` creates one machine per id with
the tests' schema, exposes each one with its address file in DIR, prints
``ready`` and serves. It reads commands from stdin, one per line, and writes
one line starting with ``done`` for each:

- ``add ID STATE`` and ``remove ID STATE`` mutate a machine from the inside;
- ``hold ID`` adds Hold from a thread whose handler blocks until ``release ID``,
  so that the queue of that machine is busy and a mutation arriving meanwhile
  is queued;
- ``waiters ID`` prints the number of pending waits on the machine.

It stops on SIGTERM or when stdin closes, removing the address files.
"""

from __future__ import annotations

import asyncio
import signal
import sys
import threading

import asyncmachine as am
from asyncmachine.rpc.repl import expose_repl
from tests.repl.helpers import SCHEMA, Handlers


class HoldHandlers(Handlers):
    """Blocks the HoldState handler until released."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()

    def HoldState(self, e: am.Event) -> None:
        self.entered.set()
        self.release.wait()


async def serve(directory: str, ids: list[str]) -> None:
    handlers = {mach_id: HoldHandlers() for mach_id in ids}
    machines = {
        mach_id: am.Machine(
            SCHEMA, id=mach_id, handlers=handlers[mach_id], handler_timeout=None
        )
        for mach_id in ids
    }
    endpoints = [
        await expose_repl(mach, repl_dir=directory) for mach in machines.values()
    ]
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(
        lambda: asyncio.StreamReaderProtocol(reader), sys.stdin
    )
    print("ready", flush=True)

    async def run(words: list[str]) -> str:
        command, mach_id, *rest = words
        mach = machines[mach_id]
        if command in ("add", "remove"):
            return str(int(getattr(mach, command)(rest[0])))
        if command == "hold":
            thread = threading.Thread(target=mach.add, args=("Hold",), daemon=True)
            thread.start()
            await asyncio.to_thread(handlers[mach_id].entered.wait)
            return "held"
        if command == "release":
            handlers[mach_id].release.set()
            return "released"
        if command == "waiters":
            return str(len(mach._waiters))
        raise ValueError(f"unknown command {command!r}")

    async def read_commands() -> None:
        while line := await reader.readline():
            print("done", await run(line.decode().split()), flush=True)
        stop.set()

    commands = loop.create_task(read_commands())
    await stop.wait()
    commands.cancel()
    for handler in handlers.values():
        handler.release.set()
    for endpoint in endpoints:
        await endpoint.close()


if __name__ == "__main__":
    asyncio.run(serve(sys.argv[1], sys.argv[2:]))
