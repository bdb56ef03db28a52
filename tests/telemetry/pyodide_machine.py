"""A machine in Pyodide that reports to a collector over WebSocket.

Not a pytest module: tests/pyodide/run_module.mjs copies it into Pyodide under
Node.js and awaits ``main(url)`` in Pyodide's event loop, without asyncio.run().
"""

import json
import sys

import asyncmachine as am
from asyncmachine import telemetry


async def main(url):
    """Attach a machine to `url`, mutate it, and return what happened as JSON."""
    imported_early = "aiohttp" in sys.modules
    mach = am.Machine(
        {
            "Start": am.State(add=["Ready"]),
            "Ready": am.State(),
            "Msg": am.State(multi=True),
        },
        id="in-pyodide",
    )
    telemetry.attach(mach, url)
    mach.add("Start")
    for n in range(20):
        mach.add("Msg", {"n": n})
    mach.remove("Ready")
    flushed = await telemetry.flush(timeout=30)
    stats = telemetry.stats()
    await telemetry.close()
    return json.dumps(
        {
            "platform": sys.platform,
            "aiohttp_imported": imported_early or "aiohttp" in sys.modules,
            "flushed": flushed,
            "sent": stats[0]["sent"],
            "dropped": stats[0]["dropped"],
            "clock": mach.clock(),
        }
    )
