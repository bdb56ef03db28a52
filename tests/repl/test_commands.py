"""Shell commands run in-process against real endpoints on 127.0.0.1."""

from __future__ import annotations

import asyncio

import pytest

import asyncmachine as am
from amrepl import Pool, Runner, UsageError, command_line_entries, parse_arg_value
from amrepl._commands import LIST_FLAGS_LEGEND
from amrepl._pool import LinkStatus
from tests.repl.helpers import exposed, new_machine, shell_runner, sink_output


def run(machines, steps, *, background_waits=False):
    """Expose machines, connect a runner and return ``await steps(runner, sink)``."""

    async def scenario():
        async with exposed(machines) as endpoints:
            async with shell_runner(endpoints, background_waits=background_waits) as (
                runner,
                sink,
            ):
                return await steps(runner, sink)

    return asyncio.run(scenario())


def fleet():
    """Three machines with parents, ids and clocks that the filters tell apart."""
    foo = new_machine("server-foo")
    foo.add("Start")
    bar = new_machine("browser-bar-1", parent_id="server-foo")
    bar.add(["Msg", "Bored"])
    baz = new_machine("browser-bar-2", parent_id="server-foo")
    baz.add("Msg")
    baz.add("Msg")
    return [foo, bar, baz]


async def output_of(runner, sink, line):
    start = len(sink.getvalue())
    status = await runner.run_line(line)
    return status, sink.getvalue()[start:]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("msg=hi", ("msg", "hi")),
        ("n=3", ("n", 3)),
        ("flag=true", ("flag", True)),
        ("none=null", ("none", None)),
        ('quoted="3"', ("quoted", "3")),
        ('obj={"a": [1, 2]}', ("obj", {"a": [1, 2]})),
        ("text=a=b", ("text", "a=b")),
        ("empty=", ("empty", "")),
        ("spaces=hello world", ("spaces", "hello world")),
    ],
)
def test_arg_values_read_as_json_or_text(text, expected):
    assert parse_arg_value(text) == expected


@pytest.mark.parametrize("text", ["novalue", "=3"])
def test_arg_without_name_rejected(text):
    with pytest.raises(UsageError, match="NAME=VALUE"):
        parse_arg_value(text)


def test_list_layout():
    async def steps(runner, sink):
        return [
            await output_of(runner, sink, "list"),
            await output_of(runner, sink, "list -Z"),
            await output_of(runner, sink, "list --no-states"),
        ]

    plain, all_states, no_states = run(fleet(), steps)
    assert plain == (
        0,
        "1. browser-bar-1 t2\n   C: (Msg:1 Bored:1)\n"
        "2. browser-bar-2 t3\n   C: (Msg:3)\n"
        "3. server-foo t2\n   CR: (Start:1 Ready:1)\n",
    )
    assert all_states[1].splitlines()[5] == (
        "   CR: (Start:1 Ready:1) [Msg:0 Bored:0 Blocked:0 Hold:0 Exception:0]"
    )
    assert no_states == (
        0,
        "1. browser-bar-1 t2\n2. browser-bar-2 t3\n3. server-foo t2\n",
    )


FILTER_CASES = [
    ("--active Msg", ["browser-bar-1", "browser-bar-2"]),
    ("-a Msg -a Bored", ["browser-bar-1"]),
    ("--inactive Bored", ["browser-bar-2", "server-foo"]),
    ("--id-prefix browser-", ["browser-bar-1", "browser-bar-2"]),
    ("--id-suffix -2", ["browser-bar-2"]),
    ("--id-contains bar", ["browser-bar-1", "browser-bar-2"]),
    ("--id-regexp '^s.*o$'", ["server-foo"]),
    ("--parent server-foo", ["browser-bar-1", "browser-bar-2"]),
    ("--mtime-min 3", ["browser-bar-2"]),
    ("--mtime-max 2", ["browser-bar-1", "server-foo"]),
    ("--mtime-min 1 --mtime-states Msg", ["browser-bar-1", "browser-bar-2"]),
    ("--mtime-max 0 --mtime-states Msg", ["server-foo"]),
    ("--limit 2", ["browser-bar-1", "browser-bar-2"]),
    ("--offset 1", ["browser-bar-2", "server-foo"]),
    ("--offset 1 --limit 1", ["browser-bar-2"]),
    ("--offset 5", []),
    ("-p browser- -i Bored", ["browser-bar-2"]),
]


def test_list_filters():
    async def steps(runner, sink):
        found = {}
        for flags, _ in FILTER_CASES:
            status, text = await output_of(runner, sink, f"list --no-states {flags}")
            assert status == 0, text
            ids = [line.split()[1] for line in text.splitlines() if line[0].isdigit()]
            found[flags] = ids
        return found

    found = run(fleet(), steps)
    for flags, expected in FILTER_CASES:
        assert found[flags] == expected, flags


def test_list_numbers_continue_after_offset():
    async def steps(runner, sink):
        return await output_of(runner, sink, "list --no-states --offset 1")

    assert run(fleet(), steps) == (0, "2. browser-bar-2 t3\n3. server-foo t2\n")


def test_list_invalid_filters():
    async def steps(runner, sink):
        return [
            await output_of(runner, sink, "list --id-regexp '('"),
            await output_of(runner, sink, "list --limit -1"),
            await output_of(runner, sink, "list --bogus"),
        ]

    regexp, limit, bogus = run(fleet(), steps)
    assert regexp[0] == 2
    assert "invalid --id-regexp '('" in regexp[1]
    assert limit[0] == 2
    assert "expected 0 or more" in limit[1]
    assert bogus[0] == 2
    assert "unrecognized arguments: --bogus" in bogus[1]


def test_mutations_pass_typed_args():
    seen = []

    class Recorder:
        def MsgState(self, e):
            seen.append(dict(e.args))

    mach = am.Machine(
        {"Msg": am.State(multi=True), "Other": am.State()}, id="m1", handlers=Recorder()
    )

    async def steps(runner, sink):
        return [
            await output_of(
                runner, sink, "add m1 Msg --arg msg=hi --arg n=3 --arg 'o={\"a\": 1}'"
            ),
            await output_of(runner, sink, "set m1 Other"),
            await output_of(runner, sink, "remove . Other"),
        ]

    add, set_result, remove = run([mach], steps)
    assert add == (0, "=> executed\n")
    assert seen == [{"msg": "hi", "n": 3, "o": {"a": 1}}]
    assert set_result == (0, "=> executed\n")
    assert remove == (0, "=> executed\n")
    assert mach.active_states() == []


def test_machine_lookup_errors():
    async def steps(runner, sink):
        return [
            await output_of(runner, sink, "add nope Start"),
            await output_of(runner, sink, "add server-foo Nope Start"),
            await output_of(runner, sink, "add server Start"),
            await output_of(runner, sink, "mach ."),
        ]

    unknown, state, prefix, dot = run(fleet(), steps)
    assert unknown[0] == 2
    assert "unknown machine 'nope'" in unknown[1]
    assert state[0] == 2
    assert "unknown states Nope for machine server-foo" in state[1]
    # Ids match exactly, never by prefix.
    assert prefix[0] == 2
    assert dot == (0, "=> (Msg:1 Bored:1)\n")


def test_group_add_and_remove():
    other = am.Machine({"Msg": am.State(multi=True)}, id="other")

    async def steps(runner, sink):
        return [
            await output_of(runner, sink, "group-add Bored -p browser-"),
            await output_of(runner, sink, "group-add Blocked"),
            await output_of(runner, sink, "group-remove Bored"),
            await output_of(runner, sink, "group-add Msg --arg msg=hi"),
        ]

    machines = [*fleet(), other]
    add, blocked, remove, msg = run(machines, steps)
    assert add == (0, "=> Executed: 2\n=> Queued: 0\n=> Canceled: 0\n")
    assert blocked == (
        1,
        "=> Executed: 0\n=> Queued: 0\n=> Canceled: 3\n"
        "=> Skipped: 1 (missing some of the states)\n",
    )
    # group-remove removes, on every machine that has the state.
    assert remove[0] == 0
    assert remove[1].startswith("=> Executed: 3\n")
    assert not any(mach.is_active("Bored") for mach in machines[:3])
    assert msg == (0, "=> Executed: 4\n=> Queued: 0\n=> Canceled: 0\n")


def test_waits_block_without_background():
    mach = new_machine("m1")

    async def steps(runner, sink):
        task = asyncio.get_running_loop().create_task(
            output_of(runner, sink, "when m1 Start Ready")
        )
        while not mach._waiters:
            await asyncio.sleep(0.01)
        mach.add("Start")
        when = await task
        when_not = await output_of(runner, sink, "when-not m1 Bored")
        when_time = await output_of(runner, sink, "when-time m1 -s Start -t 1")
        timeout = await output_of(runner, sink, "when m1 Bored --timeout 0.1")
        while mach._waiters:
            await asyncio.sleep(0.01)
        mismatch = await output_of(runner, sink, "when-time m1 -s Start -s Ready -t 1")
        return when, when_not, when_time, timeout, mismatch

    when, when_not, when_time, timeout, mismatch = run([mach], steps)
    assert when == (0, "=> [1 1]\n")
    assert when_not == (0, "=> [0]\n")
    assert when_time == (0, "=> [1]\n")
    assert timeout == (2, "err> when m1 Bored timed out after 0.1 s\n")
    assert mismatch[0] == 2
    assert "2 states (-s) and 1 ticks (-t)" in mismatch[1]


def test_wait_on_disposed_machine_fails():
    mach = new_machine("m1")

    async def steps(runner, sink):
        task = asyncio.get_running_loop().create_task(
            output_of(runner, sink, "when m1 Bored")
        )
        while not mach._waiters:
            await asyncio.sleep(0.01)
        mach.dispose()
        return await task

    status, text = run([mach], steps)
    assert status == 2
    assert "when m1 Bored: machine m1 was disposed" in text


def test_views():
    mach = new_machine("m1")
    mach.add("Start")

    async def steps(runner, sink):
        return [
            await output_of(runner, sink, "inspect m1"),
            await output_of(runner, sink, "mach m1"),
            await output_of(runner, sink, "mach m1 --all"),
            await output_of(runner, sink, "time m1"),
            await output_of(runner, sink, "time m1 --sum"),
            await output_of(runner, sink, "time m1 Ready Start"),
            await output_of(runner, sink, "status"),
        ]

    inspect, mach_line, mach_all, time, time_sum, time_states, status = run(
        [mach], steps
    )
    assert inspect == (0, f"mach://m1\n{mach.inspect()}")
    assert mach_line == (0, "=> (Start:1 Ready:1)\n")
    assert mach_all == (
        0,
        "=> (Start:1 Ready:1) [Msg:0 Bored:0 Blocked:0 Hold:0 Exception:0]\n",
    )
    assert time == (0, "=> [1 1 0 0 0 0 0]\n")
    assert time_sum == (0, "=> 2\n")
    assert time_states == (0, "=> [1 1]\n")
    assert status == (0, "Connected: 1\nConnecting: 0\nDisconnected: 0\nTotal: 1\n")


def test_script_runs_until_first_failure(tmp_path):
    mach = new_machine("m1")
    good = tmp_path / "good.txt"
    good.write_text("# set up\nadd m1 Start\n\nwhen m1 Ready\nadd m1 Msg --arg n=1\n")
    bad = tmp_path / "bad.txt"
    bad.write_text("add m1 Bored\nadd m1 Blocked\nremove m1 Bored\n")

    async def steps(runner, sink):
        return [
            await output_of(runner, sink, f"script {good}"),
            await output_of(runner, sink, f"script {bad}"),
            await output_of(runner, sink, f"script {tmp_path / 'missing.txt'}"),
        ]

    good_run, bad_run, missing = run([mach], steps, background_waits=True)
    assert good_run == (0, "=> executed\n=> [1]\n=> executed\n")
    assert bad_run[0] == 1
    assert bad_run[1] == (
        f"=> executed\n=> canceled\nerr> script {bad} stopped at line 2: "
        "add m1 Blocked\n"
    )
    # Line 3 never ran.
    assert mach.is_active("Bored")
    assert missing[0] == 2
    assert "cannot read script" in missing[1]


def test_help_cheatsheet_and_unknown_command():
    async def steps(runner, sink):
        return [
            await output_of(runner, sink, "help"),
            await output_of(runner, sink, "help group-add"),
            await output_of(runner, sink, "add -h"),
            await output_of(runner, sink, "cheatsheet"),
            await output_of(runner, sink, "bogus"),
            await output_of(runner, sink, "add 'm1"),
            await output_of(runner, sink, "   # only a comment"),
        ]

    help_all, help_group, add_help, cheatsheet, bogus, quote, comment = run(
        [new_machine("m1")], steps
    )
    assert help_all[0] == 0
    for name in ("list", "group-remove", "when-time", "script", "exit"):
        assert f"\n{name} " in "\n" + help_all[1]
    assert "--id-regexp REGEXP" in help_group[1]
    assert add_help[0] == 0
    assert "usage: add" in add_help[1]
    assert "group-add" in cheatsheet[1]
    assert bogus == (
        2,
        "err> unknown command 'bogus'; type 'help' for the list of commands\n",
    )
    assert quote[0] == 2
    assert "invalid command line" in quote[1]
    assert comment == (0, "")


def test_list_flags_explained_in_help():
    # The shared schema adds Ready with Start, so S needs a schema of its own.
    starting = am.Machine({"Start": am.State(), "Ready": am.State()}, id="m1")
    starting.add("Start")

    async def steps(runner, sink):
        return [
            await output_of(runner, sink, "list"),
            await output_of(runner, sink, "help"),
            await output_of(runner, sink, "help list"),
        ]

    listed, help_all, help_list = run([starting], steps)
    assert listed == (0, "1. m1 t1\n   CS: (Start:1)\n")
    assert LIST_FLAGS_LEGEND in help_all[1]
    assert "S Start active but not Ready" in LIST_FLAGS_LEGEND
    # argparse wraps the epilog to the terminal width.
    assert LIST_FLAGS_LEGEND in " ".join(help_list[1].split())


def test_disconnected_machine_listed_with_last_states():
    mach = new_machine("m1")
    mach.add("Start")

    async def scenario():
        async with exposed([mach]) as [endpoint]:
            async with shell_runner([endpoint]) as (runner, sink):
                await endpoint.close()
                [link] = runner.pool.links
                while link.status is LinkStatus.CONNECTED:
                    await asyncio.sleep(0.01)
                listed = await output_of(runner, sink, "list")
                hidden = await output_of(runner, sink, "list --no-disconn")
                add = await output_of(runner, sink, "add m1 Bored")
                return listed, hidden, add, sink.getvalue()

    listed, hidden, add, everything = asyncio.run(scenario())
    assert listed == (0, "1. m1 t2\n   DR: (Start:1 Ready:1)\n")
    assert hidden == (0, "=> no machines\n")
    assert add[0] == 2
    assert "machine 'm1' at 127.0.0.1:" in add[1]
    assert "is not connected" in add[1]
    assert "disconnected m1 at 127.0.0.1:" in everything


def test_pool_presents_token():
    mach = new_machine("m1")

    async def connect(endpoint, token):
        output, sink = sink_output()
        pool = Pool(token=token, reconnect=False)
        runner = Runner(pool, output)
        try:
            await pool.apply(command_line_entries([endpoint.address]))
            await pool.wait_first_attempts()
            status = await runner.run_line("add m1 Start")
            [link] = pool.links
            return status, link.error, sink.getvalue()
        finally:
            await pool.close()

    async def scenario():
        async with exposed([mach], token="s3cret") as [endpoint]:
            return await connect(endpoint, "s3cret"), await connect(endpoint, "wrong")

    accepted, rejected = asyncio.run(scenario())
    assert accepted == (0, None, "=> executed\n")
    assert rejected[0] == 2
    assert rejected[1] == "authentication failed: wrong token for machine 'm1'"
    assert "unknown machine 'm1'; connected machines: none" in rejected[2]
    assert "not connected: 127.0.0.1:" in rejected[2]
    assert "authentication failed: wrong token" in rejected[2]
