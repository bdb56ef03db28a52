"""The ``%am`` line magic: list, mutate, wait for, inspect and draw machines.

It works on the live machines of the kernel's process (``am.machines()``)::

    %am list
    %am add foo Start --arg reason=manual
    %am when foo Ready --timeout 5
    %am diagram .
"""

from __future__ import annotations

import asyncio
import logging
import shlex
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from IPython.core.error import UsageError
from IPython.core.magic import Magics, line_magic, magics_class
from IPython.display import display

from .._errors import StateError
from .._machine import machines
from ..vis import DotNotFoundError, machine_graph, sequence_graph, to_dot, to_svg
from ._display import ensure_recorder, recorder_of, svg_body
from ._live import live

if TYPE_CHECKING:
    from .._machine import Machine

__all__ = ["USAGE", "AsyncmachineMagics", "am_magic"]

logger = logging.getLogger("asyncmachine.jupyter")

USAGE = """\
%am list                           machines of this process with their active states
%am add ID STATE... [--arg NAME=VALUE]...
                                   activate states; arg values are strings
%am remove ID STATE... [--arg NAME=VALUE]...
                                   deactivate states
%am set ID STATE... [--arg NAME=VALUE]...
                                   make these states (and what they imply) active
%am when ID STATE... [--timeout S] wait until all states are active
%am inspect ID                     every state with its tick, flags and relations
%am diagram ID [--states A,B] [--from STATE] [--distance N] [--hide-exception] [--dot]
                                   draw the machine (--dot prints the DOT source)
%am history ID [-n N] [--diagram]  the last N transitions (10), recorded since the
                                   machine was first displayed or inspected here
%am live ID... [--network] [--interval S]
                                   a diagram that updates after transitions

ID "." is the first machine in id order; a unique prefix of an id also works."""

# Tasks of %am when that wait in the kernel's loop, kept here so they are not
# garbage-collected while pending.
_wait_tasks: set[asyncio.Task[None]] = set()


@dataclass
class _Options:
    """Positional arguments and option values of one subcommand."""

    positional: list[str] = field(default_factory=list)
    values: dict[str, Any] = field(default_factory=dict)


# Options per subcommand: name -> (converter, repeatable). A converter of None
# marks a flag without a value.
_Converter = Callable[[str], Any] | None
_OPTIONS: dict[str, dict[str, tuple[_Converter, bool]]] = {
    "list": {},
    "add": {"--arg": (str, True)},
    "remove": {"--arg": (str, True)},
    "set": {"--arg": (str, True)},
    "when": {"--timeout": (float, False)},
    "inspect": {},
    "diagram": {
        "--states": (str, False),
        "--from": (str, False),
        "--distance": (int, False),
        "--hide-exception": (None, False),
        "--dot": (None, False),
    },
    "history": {"-n": (int, False), "--diagram": (None, False)},
    "live": {"--network": (None, False), "--interval": (float, False)},
}


def _parse_options(command: str, tokens: list[str]) -> _Options:
    specs = _OPTIONS[command]
    parsed = _Options()
    i = 0
    while i < len(tokens):
        token = tokens[i]
        i += 1
        if not token.startswith("-") or token == "-":
            parsed.positional.append(token)
            continue
        name, has_value, inline = token.partition("=")
        if name not in specs:
            known = ", ".join(specs) or "none"
            raise UsageError(
                f"%am {command}: unknown option {name!r}; options: {known}"
            )
        convert, repeatable = specs[name]
        if convert is None:
            if has_value:
                raise UsageError(f"%am {command}: {name} takes no value")
            parsed.values[name] = True
            continue
        if has_value:
            raw = inline
        elif i < len(tokens):
            raw = tokens[i]
            i += 1
        else:
            raise UsageError(f"%am {command}: {name} needs a value")
        try:
            value = convert(raw)
        except ValueError:
            kind = "a number" if convert is not str else "a value"
            raise UsageError(
                f"%am {command}: {name} expects {kind}, got {raw!r}"
            ) from None
        if repeatable:
            parsed.values.setdefault(name, []).append(value)
        else:
            parsed.values[name] = value
    return parsed


def find_machine(ident: str) -> Machine:
    """Return the live machine `ident` names: an id, a unique id prefix, or ".".

    Raises:
        UsageError: no machine matches, or a prefix matches several.
    """
    live_machines = machines()
    if not live_machines:
        raise UsageError(
            "no machines in this process; create one with am.Machine(schema, id=...)"
        )
    ids = [mach.id for mach in live_machines]
    if ident == ".":
        return live_machines[0]
    for mach in live_machines:
        if mach.id == ident:
            return mach
    matches = [mach for mach in live_machines if mach.id.startswith(ident)]
    if len(matches) == 1:
        return matches[0]
    if matches:
        raise UsageError(
            f"machine id prefix {ident!r} matches {[m.id for m in matches]}; "
            f"give more of the id"
        )
    raise UsageError(f"unknown machine {ident!r}; machines: {', '.join(ids)}")


def _machine_and_states(command: str, options: _Options) -> tuple[Machine, list[str]]:
    if len(options.positional) < 2:
        raise UsageError(f"%am {command} needs a machine id and at least one state")
    mach = find_machine(options.positional[0])
    states = options.positional[1:]
    _check_states(mach, states)
    return mach, states


def _check_states(mach: Machine, states: list[str]) -> None:
    known = mach.state_names()
    unknown = [state for state in states if state not in known]
    if unknown:
        raise UsageError(
            f"unknown states {unknown} for machine {mach.id!r}; "
            f"known states: {', '.join(known)}"
        )


def _parse_args(command: str, pairs: list[str]) -> dict[str, str] | None:
    if not pairs:
        return None
    args: dict[str, str] = {}
    for pair in pairs:
        name, has_value, value = pair.partition("=")
        if not has_value or not name:
            raise UsageError(f"%am {command}: --arg expects NAME=VALUE, got {pair!r}")
        args[name] = value
    return args


def _one_machine(command: str, options: _Options) -> Machine:
    if len(options.positional) != 1:
        raise UsageError(f"%am {command} needs exactly one machine id")
    return find_machine(options.positional[0])


# Subcommands


def _cmd_list(options: _Options) -> None:
    if options.positional:
        raise UsageError("%am list takes no arguments")
    live_machines = machines()
    if not live_machines:
        print("no machines in this process")
        return
    width = max(len(mach.id) for mach in live_machines)
    for mach in live_machines:
        print(f"{mach.id:<{width}}  {mach}")


def _mutate(command: str, options: _Options) -> None:
    mach, states = _machine_and_states(command, options)
    args = _parse_args(command, options.values.get("--arg", []))
    method = getattr(mach, command)
    try:
        result = method(states, args)
    except StateError as err:
        raise UsageError(str(err)) from None
    print(f"{mach.id}: {result} {mach}")


def _cmd_add(options: _Options) -> None:
    _mutate("add", options)


def _cmd_remove(options: _Options) -> None:
    _mutate("remove", options)


def _cmd_set(options: _Options) -> None:
    _mutate("set", options)


class _WaitScope:
    """A context for one wait: done after a timeout.

    Machines share one waiter between equal waits. A context of its own keeps
    this wait apart, so ending it never cancels someone else's ``await``.
    """

    def __init__(self) -> None:
        self.ended = False

    def done(self) -> bool:
        return self.ended


async def _wait_for(mach: Machine, states: list[str], timeout: float | None) -> str:
    """Wait until `states` are active and return the message to show."""
    named = " ".join(states)
    scope = _WaitScope()
    waiter = mach.when(states, scope)
    try:
        await asyncio.wait_for(_await(waiter), timeout)
    except TimeoutError:
        # The machine drops the waiter at its next accepted transition.
        scope.ended = True
        return (
            f"{mach.id}: timed out after {timeout:g} s waiting for {named}; now {mach}"
        )
    if mach.is_disposed():
        return f"{mach.id}: disposed while waiting for {named}"
    return f"{mach.id}: {named} active {mach}"


async def _await(awaitable: Any) -> None:
    await awaitable


def _cmd_when(options: _Options) -> None:
    mach, states = _machine_and_states("when", options)
    timeout = options.values.get("--timeout")
    if timeout is not None and timeout <= 0:
        raise UsageError(f"%am when: --timeout must be more than 0 s, got {timeout}")
    named = " ".join(states)
    if mach.is_active(*states):
        print(f"{mach.id}: {named} active {mach}")
        return

    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        loop = None
    if loop is None:
        # No loop runs in this thread, so blocking stops nothing here. Mutations
        # from other threads resolve the wait through the loop of asyncio.run.
        print(asyncio.run(_wait_for(mach, states, timeout)))
        return

    # In a kernel the cell runs inside the loop, and blocking it would stop the
    # tasks that mutate the machine. The wait runs as a task instead and
    # updates this output when it ends.
    handle = display(
        {
            "text/plain": (
                f"{mach.id}: waiting for {named}; this line updates when they are "
                f"active (to block a cell, use: await mach.when({states!r}))"
            )
        },
        raw=True,
        display_id=True,
    )

    async def wait_and_update() -> None:
        message = await _wait_for(mach, states, timeout)
        if handle is not None:
            handle.update({"text/plain": message}, raw=True)

    task = loop.create_task(wait_and_update())
    _wait_tasks.add(task)
    task.add_done_callback(_wait_tasks.discard)


def _cmd_inspect(options: _Options) -> None:
    mach = _one_machine("inspect", options)
    ensure_recorder(mach)
    print(f"machine {mach.id} {mach}")
    if mach.parent_id:
        print(f"parent  {mach.parent_id}")
    if mach.tags:
        print(f"tags    {' '.join(mach.tags)}")
    print(f"queue   {mach.queue_len()} mutations, queue tick {mach.queue_tick()}")
    if mach.err() is not None:
        print(f"error   {mach.err()!r}")
    print()
    print(mach.inspect(), end="")


def _cmd_diagram(options: _Options) -> None:
    mach = _one_machine("diagram", options)
    ensure_recorder(mach)
    values = options.values
    states = values.get("--states")
    try:
        graph = machine_graph(
            mach,
            states=[s for s in states.split(",") if s] if states else None,
            from_state=values.get("--from"),
            distance=values.get("--distance"),
            hide_exception=values.get("--hide-exception", False),
        )
    except ValueError as err:
        raise UsageError(f"%am diagram: {err}") from None
    if values.get("--dot"):
        print(to_dot(graph))
        return
    _display_graph(graph, f"{mach.id} {mach.string_all()}", "diagram")


def _display_graph(graph: Any, text: str, command: str) -> None:
    try:
        svg = svg_body(to_svg(graph))
    except DotNotFoundError as err:
        raise UsageError(f"{err}; %am {command} --dot prints the DOT source") from None
    display({"image/svg+xml": svg, "text/plain": text}, raw=True)


def _cmd_history(options: _Options) -> None:
    mach = _one_machine("history", options)
    limit = options.values.get("-n", 10)
    if limit < 1:
        raise UsageError(f"%am history: -n must be 1 or more, got {limit}")
    recorder = recorder_of(mach)
    if recorder is None:
        ensure_recorder(mach)
        print(
            f"{mach.id}: no history yet; transitions are recorded from now on "
            f"(and from the first display of a machine)"
        )
        return
    records = recorder.records(mach.id)[-limit:]
    if not records:
        print(f"{mach.id}: no transitions recorded yet")
        return
    if options.values.get("--diagram"):
        text = "\n".join(record.summary() for record in records)
        _display_graph(sequence_graph(records), text, "history")
        return
    for record in records:
        print(f"{record.tx_id:>6}  {record.summary()}")


def _cmd_live(options: _Options) -> None:
    if not options.positional:
        raise UsageError("%am live needs at least one machine id")
    targets = [find_machine(ident) for ident in options.positional]
    interval = options.values.get("--interval", 0.1)
    if interval < 0:
        raise UsageError(f"%am live: --interval must be 0 or more, got {interval}")
    live(
        *targets, network=options.values.get("--network", False), min_interval=interval
    )


_COMMANDS: dict[str, Callable[[_Options], None]] = {
    "list": _cmd_list,
    "add": _cmd_add,
    "remove": _cmd_remove,
    "set": _cmd_set,
    "when": _cmd_when,
    "inspect": _cmd_inspect,
    "diagram": _cmd_diagram,
    "history": _cmd_history,
    "live": _cmd_live,
}


def am_magic(line: str) -> None:
    """Run one ``%am`` subcommand; ``%am help`` lists them."""
    try:
        tokens = shlex.split(line)
    except ValueError as err:
        raise UsageError(f"%am: cannot parse {line!r}: {err}") from None
    if not tokens or tokens[0] in ("help", "-h", "--help"):
        print(USAGE)
        return
    command, rest = tokens[0], tokens[1:]
    handler = _COMMANDS.get(command)
    if handler is None:
        raise UsageError(
            f"%am: unknown subcommand {command!r}; use one of "
            f"{', '.join(_COMMANDS)} (%am help shows usage)"
        )
    handler(_parse_options(command, rest))


@magics_class
class AsyncmachineMagics(Magics):
    """The magics of the extension: ``%am``."""

    @line_magic
    def am(self, line: str) -> None:
        """Work with the machines of this process; ``%am help`` lists commands."""
        am_magic(line)
