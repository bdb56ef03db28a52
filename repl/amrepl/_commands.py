"""Shell commands: parsing, machine selection and execution.

Every command returns an exit status: 0 success (a mutation executed or queued),
1 a mutation canceled, 2 an error (usage, unknown machine or state, timeout,
connection failure).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import shlex
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

from asyncmachine import rpc

from ._output import Output, format_states, format_time
from ._pool import MachineLink, NotConnectedError, Pool, WaitTimeoutError

__all__ = [
    "COMMANDS",
    "LIST_FLAGS_LEGEND",
    "CommandError",
    "CommandSpec",
    "Runner",
    "UsageError",
    "parse_arg_value",
]

EXIT_OK = 0
EXIT_CANCELED = 1
EXIT_ERROR = 2

DEFAULT_WAIT_TIMEOUT = 10.0
MAX_SCRIPT_DEPTH = 8


class CommandError(Exception):
    """A command failed; the message is shown to the user."""


class UsageError(CommandError):
    """A command line is malformed."""


class _HelpShown(Exception):
    """``-h`` was given; the help text was captured."""

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.text = text


class _Parser(argparse.ArgumentParser):
    """An argument parser that raises instead of printing and exiting."""

    def __init__(self, prog: str, description: str, epilog: str | None = None) -> None:
        super().__init__(
            prog=prog, description=description, epilog=epilog, allow_abbrev=False
        )
        self._captured: list[str] = []

    def _print_message(self, message: str, file: Any = None) -> None:
        if message:
            self._captured.append(message)

    def exit(self, status: int = 0, message: str | None = None) -> NoReturn:
        text = "".join(self._captured) + (message or "")
        self._captured.clear()
        raise _HelpShown(text)

    def error(self, message: str) -> NoReturn:
        self._captured.clear()
        raise UsageError(f"{self.prog}: {message} (see '{self.prog} -h')")


# -- argument helpers -----------------------------------------------------------


def parse_arg_value(text: str) -> tuple[str, Any]:
    """Parse ``NAME=VALUE``: VALUE as JSON when it parses, else as a string.

    Raises:
        UsageError: No ``=``, or an empty name.
    """
    name, sep, raw = text.partition("=")
    if not sep or not name:
        raise UsageError(f"invalid --arg {text!r}: expected NAME=VALUE, e.g. msg=hi")
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        value = raw
    return name, value


def _args_dict(pairs: Sequence[str] | None) -> dict[str, Any] | None:
    if not pairs:
        return None
    return dict(parse_arg_value(pair) for pair in pairs)


def _non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected 0 or more, got {value}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seconds, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected seconds above 0, got {text}")
    return value


def _add_filters(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("filters")
    group.add_argument(
        "-a",
        "--active",
        action="append",
        metavar="STATE",
        default=[],
        help="only machines where STATE is active (repeatable: all of them)",
    )
    group.add_argument(
        "-i",
        "--inactive",
        action="append",
        metavar="STATE",
        default=[],
        help="only machines where STATE is inactive (repeatable: all of them)",
    )

    group.add_argument("-p", "--id-prefix", metavar="TEXT", help="id starts with TEXT")
    group.add_argument("-s", "--id-suffix", metavar="TEXT", help="id ends with TEXT")
    group.add_argument(
        "-I", "--id-contains", "--id-partial", metavar="TEXT", help="id contains TEXT"
    )
    group.add_argument(
        "-r", "--id-regexp", metavar="REGEXP", help="id matches REGEXP (re.search)"
    )
    group.add_argument("-P", "--parent", metavar="ID", help="the parent id is ID")

    group.add_argument(
        "-t",
        "--mtime-min",
        type=_non_negative_int,
        metavar="N",
        help="machine time (sum of ticks) is at least N",
    )
    group.add_argument(
        "-T",
        "--mtime-max",
        type=_non_negative_int,
        metavar="N",
        help="machine time (sum of ticks) is at most N",
    )
    group.add_argument(
        "-m",
        "--mtime-states",
        action="append",
        metavar="STATE",
        default=[],
        help="sum the ticks of these states only, for --mtime-min/--mtime-max",
    )

    group.add_argument(
        "-l",
        "--limit",
        type=_non_negative_int,
        metavar="N",
        help="at most N machines",
    )
    group.add_argument(
        "-f",
        "--offset",
        "--from",
        type=_non_negative_int,
        default=0,
        metavar="N",
        help="skip the first N matching machines",
    )


def _add_arg_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--arg",
        action="append",
        metavar="NAME=VALUE",
        default=[],
        help="mutation argument, repeatable; VALUE is read as JSON when it "
        'parses (3, true, {"a": 1}), else as a string',
    )


def _add_timeout(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--timeout",
        type=_positive_float,
        default=DEFAULT_WAIT_TIMEOUT,
        metavar="SECONDS",
        help=f"give up after SECONDS (default: {DEFAULT_WAIT_TIMEOUT:g})",
    )


# -- command table ---------------------------------------------------------------


@dataclass(frozen=True)
class CommandSpec:
    """A command: its parser, its handler and what its positionals are.

    Attributes:
        name: The command word.
        summary: One line for ``help``.
        handler: The ``Runner`` method name that runs it.
        positionals: What the completer offers for positionals: ``mach-states``
            (a machine id, then its states), ``mach``, ``states`` (states of every
            machine), ``file``, ``command`` or ``none``.
        build: Adds the command's arguments to its parser.
        epilog: Text shown after the options in ``help COMMAND``, or None.
    """

    name: str
    summary: str
    handler: str
    positionals: str
    build: Callable[[argparse.ArgumentParser], None]
    epilog: str | None = None


def _build_mutation(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "machine", metavar="MACH", help="machine id, or . for the first"
    )
    parser.add_argument("states", nargs="+", metavar="STATE")
    _add_arg_option(parser)


def _build_group(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("states", nargs="+", metavar="STATE")
    _add_filters(parser)
    _add_arg_option(parser)


def _build_when(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "machine", metavar="MACH", help="machine id, or . for the first"
    )
    parser.add_argument("states", nargs="+", metavar="STATE")
    _add_timeout(parser)


def _build_when_time(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "machine", metavar="MACH", help="machine id, or . for the first"
    )
    parser.add_argument(
        "-s",
        "--state",
        action="append",
        default=[],
        metavar="STATE",
        dest="states",
        help="a state, repeatable; pairs with the -t in the same place",
    )
    parser.add_argument(
        "-t",
        "--tick",
        action="append",
        default=[],
        type=_non_negative_int,
        metavar="TICK",
        dest="ticks",
        help="the tick the state must reach",
    )
    _add_timeout(parser)


def _build_list(parser: argparse.ArgumentParser) -> None:
    _add_filters(parser)
    parser.add_argument(
        "-z",
        "--states",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="show the active states (default: on)",
    )
    parser.add_argument(
        "-Z",
        "--states-all",
        action="store_true",
        help="also show the inactive states",
    )
    parser.add_argument(
        "-d",
        "--disconn",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="show disconnected machines with their last known states (default: on)",
    )


def _build_machine(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "machine", metavar="MACH", help="machine id, or . for the first"
    )


def _build_mach(parser: argparse.ArgumentParser) -> None:
    _build_machine(parser)
    parser.add_argument(
        "-a", "--all", action="store_true", help="also show the inactive states"
    )


def _build_time(parser: argparse.ArgumentParser) -> None:
    _build_machine(parser)
    parser.add_argument(
        "states", nargs="*", metavar="STATE", help="only these states, in this order"
    )
    parser.add_argument("--sum", action="store_true", help="print the sum of ticks")


def _build_script(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "file", metavar="FILE", help="commands, one per line; # comments"
    )


def _build_help(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("command", nargs="?", metavar="COMMAND")


def _build_nothing(parser: argparse.ArgumentParser) -> None:
    pass


LIST_FLAGS_LEGEND = (
    "list flags: C connected, D not connected, R Ready active, "
    "S Start active but not Ready"
)
"""The meaning of the flags that ``list`` prints before each machine's states."""

_SPECS = (
    CommandSpec(
        "list",
        "list machines and their states",
        "cmd_list",
        "none",
        _build_list,
        epilog=LIST_FLAGS_LEGEND,
    ),
    CommandSpec(
        "add", "add states to a machine", "cmd_add", "mach-states", _build_mutation
    ),
    CommandSpec(
        "remove",
        "remove states from a machine",
        "cmd_remove",
        "mach-states",
        _build_mutation,
    ),
    CommandSpec(
        "set",
        "set exactly these states on a machine",
        "cmd_set",
        "mach-states",
        _build_mutation,
    ),
    CommandSpec(
        "group-add",
        "add states to every matching machine",
        "cmd_group_add",
        "states",
        _build_group,
    ),
    CommandSpec(
        "group-remove",
        "remove states from every matching machine",
        "cmd_group_remove",
        "states",
        _build_group,
    ),
    CommandSpec(
        "when",
        "wait until the states are active; print their ticks",
        "cmd_when",
        "mach-states",
        _build_when,
    ),
    CommandSpec(
        "when-not",
        "wait until the states are inactive; print their ticks",
        "cmd_when_not",
        "mach-states",
        _build_when,
    ),
    CommandSpec(
        "when-time",
        "wait until each state's tick reaches a value",
        "cmd_when_time",
        "mach",
        _build_when_time,
    ),
    CommandSpec(
        "inspect",
        "show every state with its tick and relations",
        "cmd_inspect",
        "mach",
        _build_machine,
    ),
    CommandSpec(
        "mach", "show the active states with ticks", "cmd_mach", "mach", _build_mach
    ),
    CommandSpec(
        "time", "show the ticks, or their sum", "cmd_time", "mach-states", _build_time
    ),
    CommandSpec(
        "status", "count connections by state", "cmd_status", "none", _build_nothing
    ),
    CommandSpec(
        "script",
        "run commands from a file, stopping at the first failure",
        "cmd_script",
        "file",
        _build_script,
    ),
    CommandSpec(
        "connect",
        "retry disconnected endpoints now",
        "cmd_connect",
        "none",
        _build_nothing,
    ),
    CommandSpec(
        "cheatsheet", "show example commands", "cmd_cheatsheet", "none", _build_nothing
    ),
    CommandSpec(
        "help",
        "list commands, or show one command's options",
        "cmd_help",
        "command",
        _build_help,
    ),
    CommandSpec(
        "exit", "leave the shell (also Ctrl-D)", "cmd_exit", "none", _build_nothing
    ),
)

COMMANDS: dict[str, CommandSpec] = {spec.name: spec for spec in _SPECS}
"""Every command by name."""


def _make_parser(spec: CommandSpec) -> _Parser:
    parser = _Parser(prog=spec.name, description=spec.summary, epilog=spec.epilog)
    spec.build(parser)
    return parser


_PARSERS: dict[str, _Parser] = {}


def get_parser(name: str) -> _Parser:
    """Return the argument parser of a command (built once)."""
    parser = _PARSERS.get(name)
    if parser is None:
        parser = _PARSERS[name] = _make_parser(COMMANDS[name])
    return parser


def option_strings(name: str) -> list[str]:
    """Return the option strings of a command, long ones first."""
    parser = get_parser(name)
    found: list[str] = []
    for action in parser._actions:
        found.extend(action.option_strings)
    return sorted(set(found), key=lambda text: (not text.startswith("--"), text))


CHEATSHEET = """\
list                                    every machine, active states with ticks
list -a Ready -p server- -Z             Ready machines with ids starting server-
add server-foo Msg --arg msg=hi         add Msg with the argument msg="hi"
add . Start                             . is the first machine in id order
remove server-foo Bored
set server-foo Start Ready --arg n=3    3 is read as JSON, so n is an int
group-add Msg -s -foo --arg msg=hi      add Msg to every machine ending in -foo
group-remove Bored -a Bored
when server-foo Ready --timeout 5       wait until Ready is active
when-not server-foo Bored
when-time server-foo -s Msg -t 10       wait until the tick of Msg reaches 10
inspect server-foo                      states, ticks and relations
mach server-foo --all                   active states, then [inactive]
time server-foo --sum                   machine time (sum of ticks)
script setup.txt                        run commands from a file
status                                  connections by state
"""


# -- the runner ------------------------------------------------------------------


class Runner:
    """Parses and runs commands against a pool of endpoints.

    Args:
        pool: The endpoints.
        output: Where results and errors go.
        background_waits: Run ``when*`` commands in the background and print their
            outcome when it arrives (the interactive shell); otherwise they block.
    """

    def __init__(
        self, pool: Pool, output: Output, *, background_waits: bool = False
    ) -> None:
        self.pool = pool
        self.output = output
        self.background_waits = background_waits
        self.exit_requested = False
        self._background: set[asyncio.Task[Any]] = set()
        self._script_depth = 0

    # -- entry points

    async def run_line(self, line: str) -> int:
        """Run one command line (shell syntax, ``#`` comments)."""
        try:
            argv = shlex.split(line, comments=True)
        except ValueError as err:
            self.output.error(f"invalid command line: {err}")
            return EXIT_ERROR
        if not argv:
            return EXIT_OK
        return await self.run_argv(argv)

    async def run_argv(self, argv: Sequence[str]) -> int:
        """Run one command given as words; report errors and return the status."""
        name, *rest = argv
        spec = COMMANDS.get(name)
        if spec is None:
            self.output.error(
                f"unknown command {name!r}; type 'help' for the list of commands"
            )
            return EXIT_ERROR
        try:
            args = get_parser(name).parse_args(rest)
        except _HelpShown as shown:
            self.output.block(shown.text)
            return EXIT_OK
        except UsageError as err:
            self.output.error(str(err))
            return EXIT_ERROR
        handler: Callable[[argparse.Namespace], Awaitable[int]]
        handler = getattr(self, spec.handler)
        try:
            return await handler(args)
        except CommandError as err:
            self.output.error(str(err))
        except (NotConnectedError, WaitTimeoutError) as err:
            self.output.error(str(err))
        except rpc.CallTimeoutError as err:
            self.output.error(f"{name}: {err}")
        except rpc.ConnectionClosedError as err:
            self.output.error(f"{name}: connection lost: {err}")
        except (ValueError, TypeError, PermissionError, KeyError) as err:
            # Raised by the endpoint, e.g. for an unknown state.
            self.output.error(f"{name}: {_remote_message(err)}")
        return EXIT_ERROR

    async def close(self) -> None:
        """Cancel background waits."""
        tasks = list(self._background)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    # -- machine lookup

    def find(self, mach_id: str) -> MachineLink:
        """Return the connected link of a machine id, or ``.`` for the first one.

        Raises:
            CommandError: No such connected machine, or several endpoints claim
                the id.
        """
        connected = self.pool.connected()
        if mach_id == ".":
            if not connected:
                raise CommandError(self._nothing_connected())
            return connected[0]
        matches = [link for link in connected if link.mach_id == mach_id]
        if len(matches) == 1:
            return matches[0]
        if len(matches) > 1:
            where = ", ".join(str(link.entry.address) for link in matches)
            raise CommandError(
                f"machine id {mach_id!r} is reported by {len(matches)} endpoints "
                f"({where}); remove the stale address files"
            )
        for link in self.pool.links:
            if mach_id in (link.mach_id, link.entry.hint_id):
                raise CommandError(
                    f"machine {mach_id!r} at {link.where} is not connected: "
                    f"{link.error or link.status.value}"
                )
        ids = [str(link.mach_id) for link in connected]
        listed_ids = ", ".join(ids[:10]) + (", ..." if len(ids) > 10 else "")
        message = (
            f"unknown machine {mach_id!r}; connected machines: {listed_ids or 'none'}"
        )
        # The machine may be behind an endpoint that never connected.
        unknown = [link for link in self.pool.links if not link.ever_connected]
        if unknown:
            failures = "; ".join(
                f"{link.where}: {link.error or link.status.value}"
                for link in unknown[:5]
            )
            message += f"; not connected: {failures}"
        raise CommandError(message)

    def _nothing_connected(self) -> str:
        links = self.pool.links
        if not links:
            return "no machines: no endpoint addresses found"
        problems = "; ".join(
            f"{link.where}: {link.error or link.status.value}" for link in links[:5]
        )
        return f"no machine is connected ({problems})"

    @staticmethod
    def check_states(link: MachineLink, states: Sequence[str]) -> tuple[str, ...]:
        """Return the states as a tuple, or raise CommandError naming unknown ones."""
        unknown = [state for state in states if state not in link.names]
        if unknown:
            raise CommandError(
                f"unknown states {', '.join(unknown)} for machine {link.mach_id}; "
                f"known states: {' '.join(link.names)}"
            )
        return tuple(states)

    async def select(
        self, args: argparse.Namespace, *, include_disconnected: bool = False
    ) -> list[MachineLink]:
        """Return the machines matching the listing filters, by id.

        Connected machines are refreshed first; a machine that fails to refresh is
        shown with its last known clock. Filters naming states skip machines that
        do not have those states.
        """
        pattern = None
        if args.id_regexp:
            try:
                pattern = re.compile(args.id_regexp)
            except re.error as err:
                raise UsageError(
                    f"invalid --id-regexp {args.id_regexp!r}: {err}"
                ) from None
        candidates = []
        for link in self.pool.known():
            if not (link.connected or include_disconnected):
                continue
            mach_id = link.mach_id or ""
            if args.id_prefix and not mach_id.startswith(args.id_prefix):
                continue
            if args.id_suffix and not mach_id.endswith(args.id_suffix):
                continue
            if args.id_contains and args.id_contains not in mach_id:
                continue
            if pattern is not None and not pattern.search(mach_id):
                continue
            if args.parent and link.parent_id != args.parent:
                continue
            candidates.append(link)
        await asyncio.gather(
            *(link.refresh() for link in candidates if link.connected),
            return_exceptions=True,
        )
        selected = [link for link in candidates if _matches_states(link, args)]
        end = None if args.limit is None else args.offset + args.limit
        return selected[args.offset : end]

    # -- mutations

    async def _mutation(self, kind: str, args: argparse.Namespace) -> int:
        values = _args_dict(args.arg)
        link = self.find(args.machine)
        states = self.check_states(link, args.states)
        result = await link.mutate(kind, states, values)
        if result == 0:
            self.output.result("executed")
            return EXIT_OK
        if result == 1:
            self.output.result("canceled")
            return EXIT_CANCELED
        self.output.result(f"queued (queue tick {result})")
        return EXIT_OK

    async def cmd_add(self, args: argparse.Namespace) -> int:
        return await self._mutation("add", args)

    async def cmd_remove(self, args: argparse.Namespace) -> int:
        return await self._mutation("remove", args)

    async def cmd_set(self, args: argparse.Namespace) -> int:
        return await self._mutation("set", args)

    async def _group(self, kind: str, args: argparse.Namespace) -> int:
        values = _args_dict(args.arg)
        links = await self.select(args)
        targets = [link for link in links if all(s in link.names for s in args.states)]
        skipped = len(links) - len(targets)
        results = await asyncio.gather(
            *(link.mutate(kind, args.states, values) for link in targets),
            return_exceptions=True,
        )
        executed = queued = canceled = 0
        failures = []
        for link, result in zip(targets, results, strict=True):
            if isinstance(result, BaseException):
                failures.append(f"{link.mach_id}: {_remote_message(result)}")
            elif result == 0:
                executed += 1
            elif result == 1:
                canceled += 1
            else:
                queued += 1
        self.output.result(f"Executed: {executed}")
        self.output.result(f"Queued: {queued}")
        self.output.result(f"Canceled: {canceled}")
        if skipped:
            self.output.result(f"Skipped: {skipped} (missing some of the states)")
        for failure in failures:
            self.output.error(f"{kind} failed on {failure}")
        if failures:
            return EXIT_ERROR
        return EXIT_CANCELED if canceled else EXIT_OK

    async def cmd_group_add(self, args: argparse.Namespace) -> int:
        return await self._group("add", args)

    async def cmd_group_remove(self, args: argparse.Namespace) -> int:
        return await self._group("remove", args)

    # -- waits

    async def _wait(
        self,
        kind: str,
        link: MachineLink,
        states: tuple[str, ...],
        ticks: tuple[int, ...],
        timeout: float,
        label: str,
        *,
        labelled: bool = False,
    ) -> int:
        status, result = await link.wait(kind, states, ticks, timeout)
        if status == "disposed":
            raise CommandError(f"{label}: machine {link.mach_id} was disposed")
        prefix = f"{label}: " if labelled else ""
        self.output.result(prefix + format_time(result))
        return EXIT_OK

    async def _start_wait(
        self,
        kind: str,
        link: MachineLink,
        states: tuple[str, ...],
        ticks: tuple[int, ...],
        timeout: float,
        label: str,
    ) -> int:
        if not self.background_waits or self._script_depth:
            return await self._wait(kind, link, states, ticks, timeout, label)

        async def wait_and_report() -> None:
            try:
                await self._wait(
                    kind, link, states, ticks, timeout, label, labelled=True
                )
            except asyncio.CancelledError:
                raise
            except (CommandError, NotConnectedError, WaitTimeoutError) as err:
                self.output.error(str(err))
            except Exception as err:
                self.output.error(f"{label}: {_remote_message(err)}")

        task = asyncio.get_running_loop().create_task(wait_and_report())
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        self.output.result(f"waiting: {label} (result printed when it arrives)")
        return EXIT_OK

    async def cmd_when(self, args: argparse.Namespace) -> int:
        link = self.find(args.machine)
        states = self.check_states(link, args.states)
        label = f"when {link.mach_id} {' '.join(states)}"
        return await self._start_wait("when", link, states, (), args.timeout, label)

    async def cmd_when_not(self, args: argparse.Namespace) -> int:
        link = self.find(args.machine)
        states = self.check_states(link, args.states)
        label = f"when-not {link.mach_id} {' '.join(states)}"
        return await self._start_wait("when_not", link, states, (), args.timeout, label)

    async def cmd_when_time(self, args: argparse.Namespace) -> int:
        if not args.states:
            raise UsageError("when-time: give at least one -s STATE -t TICK pair")
        if len(args.states) != len(args.ticks):
            raise UsageError(
                f"when-time: got {len(args.states)} states (-s) and "
                f"{len(args.ticks)} ticks (-t); give one tick per state"
            )
        link = self.find(args.machine)
        states = self.check_states(link, args.states)
        ticks = tuple(args.ticks)
        pairs = " ".join(f"{s}>={t}" for s, t in zip(states, ticks, strict=True))
        label = f"when-time {link.mach_id} {pairs}"
        return await self._start_wait(
            "when_time", link, states, ticks, args.timeout, label
        )

    # -- views

    async def cmd_list(self, args: argparse.Namespace) -> int:
        links = await self.select(args, include_disconnected=args.disconn)
        if not links:
            self.output.result("no machines")
            return EXIT_OK
        lines = []
        for number, link in enumerate(links, args.offset + 1):
            time = link.time or ()
            lines.append(f"{number}. {link.mach_id} t{sum(time)}")
            if args.states or args.states_all:
                # LIST_FLAGS_LEGEND explains these letters, so update it with them.
                flags = "C" if link.connected else "D"
                if _tick_of(link, "Ready") % 2:
                    flags += "R"
                elif _tick_of(link, "Start") % 2:
                    flags += "S"
                states = format_states(link.names, time, args.states_all)
                lines.append(f"   {flags}: {states}")
        self.output.block("\n".join(lines))
        return EXIT_OK

    async def cmd_inspect(self, args: argparse.Namespace) -> int:
        link = self.find(args.machine)
        text = await link.call("inspect")
        self.output.block(f"mach://{link.mach_id}\n{text}")
        return EXIT_OK

    async def cmd_mach(self, args: argparse.Namespace) -> int:
        link = self.find(args.machine)
        time = await link.refresh()
        self.output.result(format_states(link.names, time, args.all))
        return EXIT_OK

    async def cmd_time(self, args: argparse.Namespace) -> int:
        link = self.find(args.machine)
        time = await link.refresh()
        if args.states:
            states = self.check_states(link, args.states)
            ticks = dict(zip(link.names, time, strict=True))
            time = tuple(ticks[state] for state in states)
        self.output.result(str(sum(time)) if args.sum else format_time(time))
        return EXIT_OK

    async def cmd_status(self, args: argparse.Namespace) -> int:
        counts = self.pool.counts()
        self.output.block(
            f"Connected: {counts['connected']}\n"
            f"Connecting: {counts['connecting']}\n"
            f"Disconnected: {counts['disconnected']}\n"
            f"Total: {counts['total']}"
        )
        return EXIT_OK

    # -- the shell itself

    async def cmd_script(self, args: argparse.Namespace) -> int:
        path = Path(args.file).expanduser()
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except OSError as err:
            raise CommandError(f"cannot read script {path}: {err}") from None
        if self._script_depth >= MAX_SCRIPT_DEPTH:
            raise CommandError(
                f"script {path}: scripts nested more than {MAX_SCRIPT_DEPTH} deep"
            )
        self._script_depth += 1
        try:
            for number, line in enumerate(lines, 1):
                status = await self.run_line(line)
                if status != EXIT_OK:
                    self.output.error(
                        f"script {path} stopped at line {number}: {line.strip()}"
                    )
                    return status
                if self.exit_requested:
                    break
        finally:
            self._script_depth -= 1
        return EXIT_OK

    async def cmd_connect(self, args: argparse.Namespace) -> int:
        self.pool.retry_now()
        counts = self.pool.counts()
        self.output.result(f"retrying {counts['disconnected']} disconnected endpoints")
        return EXIT_OK

    async def cmd_cheatsheet(self, args: argparse.Namespace) -> int:
        self.output.block(CHEATSHEET)
        return EXIT_OK

    async def cmd_help(self, args: argparse.Namespace) -> int:
        if args.command:
            if args.command not in COMMANDS:
                raise UsageError(
                    f"help: unknown command {args.command!r}; type 'help' for the list"
                )
            self.output.block(get_parser(args.command).format_help())
            return EXIT_OK
        width = max(len(name) for name in COMMANDS)
        lines = [f"{spec.name:<{width}}  {spec.summary}" for spec in _SPECS]
        lines.append("")
        lines.append("'help COMMAND' or 'COMMAND -h' shows its options; MACH may be .")
        lines.append("for the first machine in id order.")
        lines.append(LIST_FLAGS_LEGEND)
        self.output.block("\n".join(lines))
        return EXIT_OK

    async def cmd_exit(self, args: argparse.Namespace) -> int:
        self.exit_requested = True
        return EXIT_OK


def _tick_of(link: MachineLink, state: str) -> int:
    if link.time is None or state not in link.names:
        return 0
    return link.time[link.names.index(state)]


def _matches_states(link: MachineLink, args: argparse.Namespace) -> bool:
    if link.time is None or len(link.time) != len(link.names):
        return False
    ticks = dict(zip(link.names, link.time, strict=True))
    for state in args.active:
        if state not in ticks or not ticks[state] % 2:
            return False
    for state in args.inactive:
        if state not in ticks or ticks[state] % 2:
            return False
    if args.mtime_min is not None or args.mtime_max is not None:
        if args.mtime_states:
            if any(state not in ticks for state in args.mtime_states):
                return False
            mtime = sum(ticks[state] for state in args.mtime_states)
        else:
            mtime = sum(link.time)
        if args.mtime_min is not None and mtime < args.mtime_min:
            return False
        if args.mtime_max is not None and mtime > args.mtime_max:
            return False
    return True


def _remote_message(err: BaseException) -> str:
    """Return an exception's message without rpyc's remote traceback footer."""
    if isinstance(err, OSError) and err.strerror:
        # rpyc rebuilds remote OSErrors around strerror, which contains the message.
        return str(err.strerror)
    text = str(err.args[0]) if err.args else str(err)
    text = text.split("\n\n========= Remote Traceback", 1)[0].strip()
    return text or type(err).__name__
