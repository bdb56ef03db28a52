"""Client side of the Pyodide WebSocket test.

Run inside Pyodide by tests/pyodide/run_module.mjs.

Not a pytest module: ``main`` runs in Pyodide's event loop (WebLoop) through
``runPythonAsync``, without asyncio.run() and without JSPI.
"""

import asyncio
import json
import sys

import rpyc

from asyncmachine.rpc import SyncRequestError, connect_pyodide_ws


class BrowserService(rpyc.Service):
    """The page's service, which the server calls back."""

    def __init__(self):
        self.doubled = asyncio.Event()

    def exposed_double(self, value):
        self.doubled.set()
        return 2 * value


def _can_run_sync():
    """Return whether JSPI lets this Pyodide block on a promise."""
    from pyodide.ffi import can_run_sync

    return can_run_sync()


async def main(url):
    """Connect, call both ways, and return what happened as JSON."""
    service = BrowserService()
    conn = await connect_pyodide_ws(url, service, connect_timeout=30)
    results = {"platform": sys.platform, "can_run_sync": _can_run_sync()}
    results["add"] = await conn.call("add", 2, 3, timeout=30)
    results["concurrent"] = list(
        await asyncio.gather(*(conn.call("add", i, i, timeout=30) for i in range(20)))
    )
    results["big_echo_length"] = len(await conn.call("echo", "x" * 200_000))
    results["callback"] = await conn.call("call_client_later", 21, timeout=30)
    await asyncio.wait_for(service.doubled.wait(), 30)
    try:
        conn.root.add(1, 2)
    except SyncRequestError:
        results["sync_request_error"] = True
    await conn.aclose()
    results["closed"] = conn.closed
    return json.dumps(results)
