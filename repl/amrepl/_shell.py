"""The interactive shell: prompt_toolkit session, completion and history."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import AsyncGenerator, Iterable
from pathlib import Path
from typing import Any

from prompt_toolkit import PromptSession
from prompt_toolkit.completion import CompleteEvent, Completer, Completion
from prompt_toolkit.document import Document
from prompt_toolkit.history import FileHistory, History, InMemoryHistory

from ._commands import COMMANDS, Runner, option_strings
from ._pool import MachineLink, Pool

__all__ = [
    "PROMPT",
    "ReplCompleter",
    "default_history_path",
    "open_history",
    "run_shell",
]

PROMPT = "am-repl> "

# Options whose value is a state name, a machine id, or free text.
_STATE_OPTIONS = {
    "-a",
    "--active",
    "-i",
    "--inactive",
    "-m",
    "--mtime-states",
    "-s",
    "--state",
}
_ID_OPTIONS = {"-P", "--parent"}
_VALUE_OPTIONS = {
    "-p",
    "--id-prefix",
    "-I",
    "--id-contains",
    "--id-partial",
    "-r",
    "--id-regexp",
    "-t",
    "--mtime-min",
    "-T",
    "--mtime-max",
    "-l",
    "--limit",
    "-f",
    "--offset",
    "--from",
    "--arg",
    "--timeout",
    "--tick",
}
# The same letters mean other things in when-time.
_WHEN_TIME_VALUE_OPTIONS = {"-t", "--tick", "--timeout"}


def default_history_path() -> Path:
    """Return ``$XDG_STATE_HOME/am-repl/history`` (``~/.local/state`` by default)."""
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "am-repl" / "history"


class _DedupFileHistory(FileHistory):
    """File history that does not store a line equal to the one before it."""

    def store_string(self, string: str) -> None:
        strings = self.get_strings()
        # get_strings() already contains the new line, appended before storing.
        if len(strings) >= 2 and strings[-2] == string:
            return
        super().store_string(string)


def open_history(path: Path | None) -> History:
    """Open the persistent history at `path`, or keep it in memory when None.

    The directory is created (mode 0700) when missing. A history that cannot be
    written falls back to memory, so a read-only home does not stop the shell.
    """
    if path is None:
        return InMemoryHistory()
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        path.touch(exist_ok=True)
    except OSError:
        return InMemoryHistory()
    return _DedupFileHistory(str(path))


class ReplCompleter(Completer):
    """Completes commands, options, machine ids and state names (case-insensitive).

    For ``add``, only states that are inactive or Multi are offered; for
    ``remove``, only active ones. The async path refreshes the target machine's
    clock first, so those lists are current.
    """

    def __init__(self, pool: Pool) -> None:
        self.pool = pool

    def get_completions(
        self, document: Document, complete_event: CompleteEvent
    ) -> Iterable[Completion]:
        yield from self._complete(document)

    async def get_completions_async(
        self, document: Document, complete_event: CompleteEvent
    ) -> AsyncGenerator[Completion, None]:
        link = self._target(document)
        if link is not None and link.connected:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(link.refresh(), 1.0)
        for completion in self._complete(document):
            yield completion

    def _target(self, document: Document) -> MachineLink | None:
        words = document.text_before_cursor.split()
        if len(words) < 2 or words[0] not in COMMANDS:
            return None
        if COMMANDS[words[0]].positionals not in ("mach-states", "mach"):
            return None
        return self._find(words[1])

    def _find(self, mach_id: str) -> MachineLink | None:
        connected = self.pool.connected()
        if mach_id == "." and connected:
            return connected[0]
        for link in connected:
            if link.mach_id == mach_id:
                return link
        return None

    def _complete(self, document: Document) -> Iterable[Completion]:
        text = document.text_before_cursor
        words = text.split()
        if not text or text[-1].isspace():
            current = ""
        else:
            current = words.pop()
        if not words:
            yield from _matching(current, COMMANDS)
            return

        command = words[0]
        spec = COMMANDS.get(command)
        if spec is None:
            return
        previous = words[-1]
        value_options = _VALUE_OPTIONS
        state_options = _STATE_OPTIONS
        if command == "when-time":
            value_options = _WHEN_TIME_VALUE_OPTIONS
            state_options = {"-s", "--state"}
        if previous in state_options:
            yield from _matching(current, self._all_states(words))
            return
        if previous in _ID_OPTIONS:
            yield from _matching(current, self._machine_ids(with_dot=False))
            return
        if previous in value_options:
            return

        if current.startswith("-"):
            yield from _matching(current, option_strings(command))
            return
        positionals = _positionals(
            words[1:], value_options | state_options | _ID_OPTIONS
        )
        kind = spec.positionals
        if kind == "command" and not positionals:
            yield from _matching(current, COMMANDS)
        elif kind in ("mach", "mach-states") and not positionals:
            yield from _matching(current, self._machine_ids(with_dot=True))
        elif kind == "mach-states" and positionals:
            link = self._find(positionals[0])
            if link is not None:
                yield from _matching(current, self._states_for(command, link))
        elif kind == "states":
            yield from _matching(current, self._union_states())

    def _machine_ids(self, with_dot: bool) -> list[str]:
        ids = sorted({link.mach_id for link in self.pool.connected() if link.mach_id})
        return [".", *ids] if with_dot else ids

    def _union_states(self) -> list[str]:
        names: dict[str, None] = {}
        for link in self.pool.connected():
            names.update(dict.fromkeys(link.names))
        return list(names)

    def _all_states(self, words: list[str]) -> list[str]:
        if len(words) >= 2 and COMMANDS[words[0]].positionals in (
            "mach",
            "mach-states",
        ):
            link = self._find(words[1])
            if link is not None:
                return list(link.names)
        return self._union_states()

    @staticmethod
    def _states_for(command: str, link: MachineLink) -> list[str]:
        time = link.time if link.time and len(link.time) == len(link.names) else None
        if time is None or command not in ("add", "remove"):
            return list(link.names)
        ticks = dict(zip(link.names, time, strict=True))
        if command == "remove":
            return [name for name in link.names if ticks[name] % 2]
        return [
            name
            for name in link.names
            if not ticks[name] % 2 or link.schema.get(name, {}).get("multi")
        ]


def _positionals(words: list[str], value_options: set[str]) -> list[str]:
    found = []
    skip = False
    for word in words:
        if skip:
            skip = False
        elif word.startswith("-"):
            skip = word in value_options
        else:
            found.append(word)
    return found


def _matching(current: str, candidates: Iterable[str]) -> Iterable[Completion]:
    lowered = current.lower()
    for candidate in candidates:
        if candidate.lower().startswith(lowered):
            yield Completion(candidate, start_position=-len(current))


async def run_shell(
    runner: Runner,
    *,
    history: History | None = None,
    vi_mode: bool = False,
    input: Any = None,
    output: Any = None,
) -> int:
    """Read and run commands until ``exit``, Ctrl-D or cancellation.

    Ctrl-C at the prompt clears the line; during a command it cancels that
    command. `input` and `output` are prompt_toolkit objects (for tests: a pipe
    input and ``DummyOutput``); the default is the terminal.

    Returns:
        The exit status of the shell: 0.
    """
    session: PromptSession[str] = PromptSession(
        PROMPT,
        completer=ReplCompleter(runner.pool),
        complete_while_typing=False,
        history=history or InMemoryHistory(),
        vi_mode=vi_mode,
        input=input,
        output=output,
    )
    runner.output.result("am-repl: type 'help' for commands, Ctrl-D or 'exit' to leave")
    loop = asyncio.get_running_loop()
    while not runner.exit_requested:
        try:
            line = await session.prompt_async()
        except KeyboardInterrupt:
            continue
        except EOFError:
            break
        task = loop.create_task(runner.run_line(line))
        with _cancel_on_sigint(loop, task):
            try:
                await task
            except asyncio.CancelledError:
                current = asyncio.current_task()
                if current is not None and current.cancelling():
                    raise
                runner.output.error("interrupted")
    return 0


@contextlib.contextmanager
def _cancel_on_sigint(loop: asyncio.AbstractEventLoop, task: asyncio.Task[Any]) -> Any:
    """While a command runs, Ctrl-C (SIGINT) cancels it instead of the shell."""
    try:
        loop.add_signal_handler(signal.SIGINT, task.cancel)
    except (NotImplementedError, RuntimeError, ValueError):
        # No signal handlers off the main thread or on Windows loops.
        yield
        return
    try:
        yield
    finally:
        loop.remove_signal_handler(signal.SIGINT)
