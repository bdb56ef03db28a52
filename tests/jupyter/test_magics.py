"""Tests of the %am line magic in a real IPython shell."""

from __future__ import annotations

import asyncio
import threading

import pytest
from IPython.core.error import UsageError
from IPython.core.interactiveshell import InteractiveShell
from IPython.utils.capture import capture_output

import asyncmachine as am
from asyncmachine import jupyter
from asyncmachine.jupyter import _magics

from .conftest import SCHEMA


def run_am(shell: InteractiveShell, line: str) -> str:
    """Run ``%am line`` and return what it printed."""
    with capture_output() as captured:
        shell.run_line_magic("am", line)
    return captured.stdout


@pytest.fixture
def foo() -> am.Machine:
    return am.Machine(SCHEMA, id="jt-foo")


def test_list_shows_machines(shell: InteractiveShell, foo: am.Machine) -> None:
    foo.add("Start")
    bar = am.Machine(SCHEMA, id="jt-bar")

    lines = run_am(shell, "list").splitlines()

    assert any(
        line.startswith("jt-foo") and "(Start:1 Ready:1)" in line for line in lines
    )
    assert any(line.startswith("jt-bar") and line.endswith("()") for line in lines)
    assert lines.index(next(x for x in lines if x.startswith("jt-bar"))) < lines.index(
        next(x for x in lines if x.startswith("jt-foo"))
    )
    bar.dispose()


def test_add_remove_set(shell: InteractiveShell, foo: am.Machine) -> None:
    assert run_am(shell, "add jt-foo Start") == "jt-foo: executed (Start:1 Ready:1)\n"
    assert (
        run_am(shell, "add jt-foo Msg") == "jt-foo: executed (Start:1 Ready:1 Msg:1)\n"
    )
    assert run_am(shell, "remove jt-foo Start") == "jt-foo: executed (Msg:1)\n"
    assert run_am(shell, "set jt-foo Start Msg") == (
        "jt-foo: executed (Start:3 Ready:3 Msg:3)\n"
    )
    assert run_am(shell, "add jt-foo Ready") == (
        "jt-foo: executed (Start:3 Ready:3 Msg:3)\n"
    )
    foo.remove("Start")
    assert run_am(shell, "add jt-foo Ready") == "jt-foo: canceled (Msg:3)\n"


def test_add_passes_args(shell: InteractiveShell, foo: am.Machine) -> None:
    seen: list[dict] = []

    class Handlers:
        def MsgState(self, e: am.Event) -> None:
            seen.append(dict(e.args))

    foo.bind_handlers(Handlers())

    run_am(shell, "add jt-foo Msg --arg text='hello there' --arg=n=3")

    assert seen == [{"text": "hello there", "n": "3"}]


def test_dot_means_first_machine(shell: InteractiveShell) -> None:
    # "!" sorts before letters and digits, so this machine is first by id.
    first = am.Machine(SCHEMA, id="!jt-first")

    output = run_am(shell, "add . Start")

    assert output.startswith("!jt-first: executed")
    assert first.is_active("Start")
    first.dispose()


def test_unique_prefix_names_machine(shell: InteractiveShell, foo: am.Machine) -> None:
    assert run_am(shell, "add jt-fo Start").startswith("jt-foo: executed")


def test_unknown_machine_is_named(shell: InteractiveShell, foo: am.Machine) -> None:
    with pytest.raises(
        UsageError, match="unknown machine 'jt-nope'; machines: .*jt-foo"
    ):
        shell.run_line_magic("am", "add jt-nope Start")


def test_ambiguous_prefix(shell: InteractiveShell, foo: am.Machine) -> None:
    other = am.Machine(SCHEMA, id="jt-fox")

    with pytest.raises(UsageError, match="prefix 'jt-fo' matches"):
        shell.run_line_magic("am", "add jt-fo Start")
    other.dispose()


def test_unknown_state_is_named(shell: InteractiveShell, foo: am.Machine) -> None:
    with pytest.raises(
        UsageError, match=r"unknown states \['Nope'\] for machine 'jt-foo'"
    ):
        shell.run_line_magic("am", "add jt-foo Start Nope")
    assert not foo.is_active("Start")


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("frob", "unknown subcommand 'frob'"),
        ("add", "needs a machine id and at least one state"),
        ("add jt-foo Start --arg novalue", "--arg expects NAME=VALUE"),
        ("add jt-foo Start --timeout 1", "unknown option '--timeout'"),
        ("when jt-foo Ready --timeout", "--timeout needs a value"),
        ("when jt-foo Ready --timeout soon", "--timeout expects a number"),
        ("when jt-foo Ready --timeout 0", "more than 0"),
        ("inspect", "exactly one machine id"),
        ("history jt-foo -n 0", "1 or more"),
        ("diagram jt-foo --distance 1", "needs from_state"),
        ("diagram jt-foo --dot=yes", "takes no value"),
        ("add jt-foo 'Start", "cannot parse"),
    ],
)
def test_usage_errors(
    shell: InteractiveShell, foo: am.Machine, line: str, message: str
) -> None:
    with pytest.raises(UsageError, match=message):
        shell.run_line_magic("am", line)


def test_help_lists_subcommands(shell: InteractiveShell) -> None:
    output = run_am(shell, "help")

    for command in ("list", "add", "remove", "set", "when", "inspect", "diagram"):
        assert f"%am {command}" in output
    assert run_am(shell, "") == output


def test_inspect(shell: InteractiveShell, foo: am.Machine) -> None:
    foo.add("Start")

    output = run_am(shell, "inspect jt-foo")

    assert output.startswith("machine jt-foo (Start:1 Ready:1)\n")
    assert "queue   0 mutations" in output
    assert "1 Start\n    |Tick     1\n    |Add      Ready" in output
    assert "0 Msg\n    |Tick     0\n    |Multi    true" in output


def test_when_active_returns_at_once(shell: InteractiveShell, foo: am.Machine) -> None:
    foo.add("Start")

    assert (
        run_am(shell, "when jt-foo Ready") == "jt-foo: Ready active (Start:1 Ready:1)\n"
    )


def test_when_blocks_without_loop(shell: InteractiveShell, foo: am.Machine) -> None:
    started = threading.Event()

    def add_later() -> None:
        started.wait()
        foo.add("Start")

    thread = threading.Thread(target=add_later)
    thread.start()
    # The thread may add before or after the wait starts; both end active.
    started.set()
    output = run_am(shell, "when jt-foo Start Ready --timeout 30")
    thread.join()

    assert output == "jt-foo: Start Ready active (Start:1 Ready:1)\n"


def test_when_times_out(shell: InteractiveShell, foo: am.Machine) -> None:
    output = run_am(shell, "when jt-foo Ready --timeout 0.05")

    assert output == "jt-foo: timed out after 0.05 s waiting for Ready; now ()\n"


def test_when_timeout_keeps_other_waits(
    shell: InteractiveShell, foo: am.Machine
) -> None:
    async def main() -> None:
        other = asyncio.ensure_future(_await(foo.when("Ready")))
        await asyncio.sleep(0)
        await asyncio.to_thread(run_am, shell, "when jt-foo Ready --timeout 0.05")
        foo.add("Start")
        await asyncio.wait_for(other, 30)

    asyncio.run(main())

    assert foo.is_active("Ready")


async def _await(awaitable: object) -> None:
    await awaitable  # type: ignore[misc]


def test_when_in_running_loop_updates_output(
    shell: InteractiveShell, foo: am.Machine
) -> None:
    async def main() -> list:
        with capture_output() as captured:
            shell.run_line_magic("am", "when jt-foo Ready --timeout 30")
            tasks = list(_magics._wait_tasks)
            foo.add("Start")
            await asyncio.gather(*tasks)
        return captured.outputs

    outputs = asyncio.run(main())

    assert len(outputs) == 2
    waiting, done = outputs
    assert waiting.data["text/plain"].startswith("jt-foo: waiting for Ready")
    assert done.update
    assert done.transient["display_id"] == waiting.transient["display_id"]
    assert done.data["text/plain"] == "jt-foo: Ready active (Start:1 Ready:1)"


def test_history_lists_transitions(shell: InteractiveShell, foo: am.Machine) -> None:
    first = run_am(shell, "history jt-foo")
    foo.add("Start")
    foo.add("Msg")
    foo.remove("Start")

    output = run_am(shell, "history jt-foo -n 2")

    assert "no history yet" in first
    lines = output.splitlines()
    assert len(lines) == 2
    assert lines[0].endswith("[add] Msg -> +Msg (executed)")
    assert lines[1].endswith("[remove] Start -> -Start -Ready (executed)")


def test_diagram_dot_prints_source(shell: InteractiveShell, foo: am.Machine) -> None:
    output = run_am(shell, "diagram jt-foo --states Start,Ready --dot")

    assert output.startswith("// asyncmachine jt-foo")
    assert 'label="Start\\ntick 0"' in output
    assert "Msg\\ntick" not in output


@pytest.mark.usefixtures("need_dot")
def test_diagram_displays_svg(shell: InteractiveShell, foo: am.Machine) -> None:
    foo.add("Start")

    with capture_output() as captured:
        shell.run_line_magic("am", "diagram jt-foo --from Start --distance 1")

    (output,) = captured.outputs
    svg = output.data["image/svg+xml"]
    assert svg.startswith("<svg")
    assert ">Ready</text>" in svg
    assert ">tick 1</text>" in svg
    assert output.data["text/plain"] == "jt-foo (Start:1 Ready:1) [Msg:0 Exception:0]"


@pytest.mark.usefixtures("need_dot")
def test_history_diagram(shell: InteractiveShell, foo: am.Machine) -> None:
    run_am(shell, "history jt-foo")
    foo.add("Start")

    with capture_output() as captured:
        shell.run_line_magic("am", "history jt-foo --diagram")

    (output,) = captured.outputs
    assert "<svg" in output.data["image/svg+xml"]
    assert output.data["text/plain"] == "[add] Start -> +Start +Ready (executed)"


def test_unload_removes_magic(shell: InteractiveShell) -> None:
    shell.run_line_magic("unload_ext", "asyncmachine.jupyter")
    try:
        assert "am" not in shell.magics_manager.magics["line"]
        assert (
            am.Machine
            not in shell.display_formatter.formatters["text/plain"].type_printers
        )
    finally:
        shell.run_line_magic("load_ext", "asyncmachine.jupyter")
    assert "am" in shell.magics_manager.magics["line"]


@pytest.mark.usefixtures("need_dot")
def test_live_magic_displays_diagram(shell: InteractiveShell, foo: am.Machine) -> None:
    with capture_output() as captured:
        shell.run_line_magic("am", "live jt-foo --interval 0")
        foo.add("Start")

    first, update = captured.outputs
    assert first.data["image/svg+xml"].startswith("<svg")
    assert update.update
    assert update.data["text/plain"] == "jt-foo (Start:1 Ready:1) [Msg:0 Exception:0]"
    assert jupyter.recorder_of(foo) is not None
