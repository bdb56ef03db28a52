"""A process with a few machines that report to a collector, for the tests.

Run as ``python -m tests.telemetry.machines_proc ADDRESS PREFIX MUTATIONS DUMP``:
it builds a parent and two child machines with ids starting with PREFIX,
attaches them with ``telemetry.attach_from_env`` (AM_DBG_ADDR is set to
ADDRESS), runs MUTATIONS seeded random mutations on each, records the same
transitions locally with ``history.track`` and writes them to the dump file DUMP,
so the test can compare what the collector received with what happened.
"""

from __future__ import annotations

import asyncio
import os
import random
import sys

import asyncmachine as am
from asyncmachine import history, telemetry

SCHEMA = {
    "Start": am.State(add=["Ready"]),
    "Ready": am.State(require=["Start"]),
    "Busy": am.State(remove=["Idle"]),
    "Idle": am.State(auto=True, remove=["Busy"]),
    "Msg": am.State(multi=True),
    "ErrNet": am.State(require=["Exception"]),
}


class Handlers:
    def BusyEnter(self, e: am.Event) -> bool:
        # Reject every third attempt, so that canceled transitions occur.
        return e.machine.tick("Busy") % 3 != 2


async def main(address: str, prefix: str, mutations: int, dump: str) -> None:
    os.environ[telemetry.ENV_ADDR] = address
    rng = random.Random(prefix)
    parent = am.Machine(SCHEMA, id=f"{prefix}-parent", tags=("test",))
    children = [
        am.Machine(
            SCHEMA, id=f"{prefix}-child-{n}", parent_id=parent.id, handlers=Handlers()
        )
        for n in range(2)
    ]
    machines = [parent, *children]
    histories = []
    for mach in machines:
        mach.set_log_level(am.LogLevel.OPS)
        histories.append(history.track(mach, max_records=None, checks=True))
        telemetry.attach_from_env(mach)
    for i in range(mutations):
        mach = rng.choice(machines)
        state = rng.choice(list(SCHEMA))
        choice = rng.random()
        if choice < 0.5:
            mach.add(state, {"n": i, "secret": "value-never-sent"})
        elif choice < 0.8:
            mach.remove(state)
        elif choice < 0.9:
            mach.set([state, "Start"])
        else:
            mach.add_err(ValueError("boom"))
        if i % 50 == 0:
            await asyncio.sleep(0)
    children[0].add("Msg", event=None)
    if not await telemetry.flush(timeout=20):
        print("flush timed out", file=sys.stderr)
        sys.exit(2)
    history.write_dump(dump, histories)
    print(telemetry.stats()[0]["sent"], flush=True)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]))
