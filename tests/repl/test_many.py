"""list and group-add over 200 machines behind endpoints in one process.

Correctness only: bench/repl.py measures the time.
"""

from __future__ import annotations

import asyncio

from tests.repl.helpers import exposed, new_machine, shell_runner

COUNT = 200


def test_list_and_group_add_over_200_machines():
    machines = [new_machine(f"m{i:03d}") for i in range(COUNT)]
    for mach in machines[::2]:
        mach.add("Start")

    async def scenario():
        async with exposed(machines) as endpoints:
            async with shell_runner(endpoints) as (runner, sink):
                connected = len(runner.pool.connected())
                start = len(sink.getvalue())
                listed = await runner.run_line("list")
                list_text = sink.getvalue()[start:]
                start = len(sink.getvalue())
                added = await runner.run_line("group-add Bored --arg n=1")
                add_text = sink.getvalue()[start:]
                start = len(sink.getvalue())
                removed = await runner.run_line("group-remove Bored -a Ready")
                remove_text = sink.getvalue()[start:]
                return (
                    connected,
                    listed,
                    list_text,
                    added,
                    add_text,
                    removed,
                    remove_text,
                )

    connected, listed, list_text, added, add_text, removed, remove_text = asyncio.run(
        scenario()
    )
    assert connected == COUNT
    assert listed == 0
    lines = list_text.splitlines()
    assert len(lines) == 2 * COUNT
    assert lines[0] == "1. m000 t2"
    assert lines[1] == "   CR: (Start:1 Ready:1)"
    assert lines[2] == "2. m001 t0"
    assert lines[3] == "   C: ()"
    assert lines[-2] == f"{COUNT}. m{COUNT - 1:03d} t0"

    assert added == 0
    assert add_text == f"=> Executed: {COUNT}\n=> Queued: 0\n=> Canceled: 0\n"
    assert removed == 0
    assert remove_text == f"=> Executed: {COUNT // 2}\n=> Queued: 0\n=> Canceled: 0\n"
    for index, mach in enumerate(machines):
        assert mach.is_active("Bored") == (index % 2 == 1), mach.id
