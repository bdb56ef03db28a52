"""The ``am-repl`` command: options, CLI mode (one command) and shell mode."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import shlex
import signal
import sys
from collections.abc import Sequence
from functools import partial
from importlib import metadata
from pathlib import Path
from typing import Any

from ._addresses import (
    AddressEntry,
    AddressError,
    AddressWatcher,
    command_line_entries,
    read_directory,
    read_file,
    require_directory,
)
from ._commands import COMMANDS, EXIT_ERROR, LIST_FLAGS_LEGEND, Runner
from ._output import Output, use_color
from ._pool import Pool

__all__ = ["main", "parse_args", "run_interactive"]

logger = logging.getLogger("asyncmachine.repl")

ENV_TOKEN = "AM_REPL_TOKEN"
EXIT_INTERRUPTED = 130
EXIT_TERMINATED = 143

_DESCRIPTION = """\
Shell over the REPL endpoints of asyncmachine machines. Without a command, opens
an interactive shell; with '-- COMMAND ARGS...', runs that one command and exits
with 0 (executed or queued), 1 (canceled) or 2 (error)."""

_EPILOG = f"""\
examples:
  am-repl 127.0.0.1:7001
  am-repl -d /tmp/am-repl
  am-repl -d /tmp/am-repl -- add server-foo Msg --arg msg=hi
  am-repl -d /tmp/am-repl -- list -a Ready

The token for endpoints that require one is read from $AM_REPL_TOKEN or
--token-file.

{LIST_FLAGS_LEGEND}"""


def _version() -> str:
    try:
        return metadata.version("asyncmachine")
    except metadata.PackageNotFoundError:
        return "unknown (not installed)"


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seconds, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected seconds above 0, got {text}")
    return value


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="am-repl",
        usage="am-repl [options] (ADDR... | -f FILE | -d DIR) [-- COMMAND ARGS...]",
        description=_DESCRIPTION,
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "addresses",
        nargs="*",
        metavar="ADDR",
        help="endpoint address HOST:PORT, or HOST:PORT/PATH for a WebSocket",
    )

    source = parser.add_mutually_exclusive_group()
    source.add_argument(
        "-f",
        "--file",
        metavar="FILE",
        help="read addresses from FILE, one per line (# comments)",
    )
    source.add_argument(
        "-d",
        "--dir",
        metavar="DIR",
        help="read every *.addr file under DIR, recursively",
    )
    parser.add_argument(
        "--no-watch",
        dest="watch",
        action="store_false",
        help="do not poll FILE or DIR for changes in the shell",
    )
    parser.add_argument(
        "--poll-interval",
        type=_positive_float,
        default=1.0,
        metavar="SECONDS",
        help="seconds between polls of FILE or DIR (default: 1)",
    )

    parser.add_argument(
        "--connect-timeout",
        type=_positive_float,
        default=3.0,
        metavar="SECONDS",
        help="seconds allowed per connection attempt (default: 3)",
    )
    parser.add_argument(
        "--call-timeout",
        type=_positive_float,
        default=10.0,
        metavar="SECONDS",
        help="seconds allowed per call to an endpoint (default: 10)",
    )

    parser.add_argument(
        "--token-file",
        metavar="FILE",
        help=f"read the endpoints' token from FILE (default: ${ENV_TOKEN})",
    )
    parser.add_argument(
        "-a",
        "--req-all",
        action="store_true",
        help="CLI mode: fail unless every endpoint connects",
    )

    parser.add_argument(
        "--vi", action="store_true", help="vi key bindings in the shell"
    )
    parser.add_argument(
        "--history",
        metavar="FILE",
        help="history file (default: $XDG_STATE_HOME/am-repl/history, "
        "~/.local/state/am-repl/history when unset)",
    )
    parser.add_argument(
        "--no-history", action="store_true", help="keep no history on disk"
    )

    parser.add_argument(
        "--no-color",
        action="store_true",
        help="no colours (also when $NO_COLOR is set or output is not a terminal)",
    )
    parser.add_argument(
        "--log-level",
        default="WARNING",
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        help="level of the log on stderr (default: WARNING)",
    )
    parser.add_argument("--version", action="version", version=f"am-repl {_version()}")
    return parser


def parse_args(argv: Sequence[str]) -> tuple[argparse.Namespace, list[str] | None]:
    """Split `argv` at ``--`` and parse the options before it.

    Returns:
        The options and the command words after ``--``, or None for the shell.
    """
    words = list(argv)
    command: list[str] | None = None
    if "--" in words:
        cut = words.index("--")
        words, command = words[:cut], words[cut + 1 :]
    parser = _build_parser()
    _check_command_before_separator(parser, words, command)
    args = parser.parse_args(words)
    sources = sum(1 for given in (args.addresses, args.file, args.dir) if given)
    if sources == 0:
        parser.error("give endpoint addresses, -f FILE or -d DIR")
    if sources > 1:
        parser.error("give only one of: addresses, -f FILE, -d DIR")
    if command is not None and not command:
        parser.error("no command after '--'; e.g. '-- list'")
    return args, command


def _split_units(
    parser: argparse.ArgumentParser, words: Sequence[str]
) -> list[tuple[int, int, frozenset[str] | None]]:
    """Split `words` into the units that `parser` reads, as argparse does.

    Returns:
        ``(start, end, dests)`` per unit, covering ``words[start:end]``: an
        option with its value, where `dests` names the options (several for a
        cluster such as ``-ad DIR``, none for an unknown option), or one
        positional word, where `dests` is None. Unlike argparse, this reads a
        negative number such as ``-1`` as an unknown option.
    """
    actions = parser._option_string_actions
    long_names = [name for name in actions if name.startswith("--")]
    units: list[tuple[int, int, frozenset[str] | None]] = []
    index = 0
    while index < len(words):
        word = words[index]
        start = index
        index += 1
        if not word.startswith("-") or word == "-":
            units.append((start, index, None))
            continue
        dests: set[str] = set()
        if word.startswith("--"):
            name, equals, _ = word.partition("=")
            # argparse accepts unique prefixes of long options, e.g. --di.
            prefixed = [option for option in long_names if option.startswith(name)]
            action = actions.get(name)
            if action is None and len(prefixed) == 1:
                action = actions[prefixed[0]]
            if action is not None:
                dests.add(action.dest)
                if action.nargs != 0 and not equals:
                    index += 1
        else:
            for offset in range(1, len(word)):
                action = actions.get("-" + word[offset])
                if action is None:
                    break
                dests.add(action.dest)
                if action.nargs != 0:
                    # The value is the rest of this word, else the next word.
                    if offset == len(word) - 1:
                        index += 1
                    break
        units.append((start, min(index, len(words)), frozenset(dests)))
    return units


def _check_command_before_separator(
    parser: argparse.ArgumentParser, words: list[str], command: list[str] | None
) -> None:
    """Fail with a corrected command line when a command name comes before ``--``.

    Without the ``--``, ``am-repl -d DIR list``, ``am-repl HOST:PORT list`` and
    ``am-repl list`` read ``list`` as an endpoint address. This check fails when
    a positional word is a command name, unless addresses come with -d or -f,
    which the caller reports. A valid address contains a colon, and no command
    name does.
    """
    units = _split_units(parser, words)
    positional_starts = [start for start, _, dests in units if dests is None]
    commands = [start for start in positional_starts if words[start] in COMMANDS]
    if not commands:
        return
    sources = [
        (start, end)
        for start, end, dests in units
        if dests is not None and dests & {"dir", "file"}
    ]
    if sources and commands[0] != positional_starts[0]:
        # Addresses next to -d or -f get the "give only one of" error instead.
        return
    first = commands[0]
    if not sources and first == positional_starts[0]:
        rest = shlex.join(words[first:] if command is None else command)
        parser.error(
            f"{words[first]!r} is a command, not an address, so name the "
            f"endpoints first and put it after '--', as in: "
            f"am-repl -d DIR -- {rest}"
        )
    # A -d or -f only after the command word moves before the "--". When one
    # comes before it, every word from the command word on is the command's.
    moved: set[int] = set()
    if all(start > first for start, _ in sources):
        moved = {index for start, end in sources for index in range(start, end)}
    options = [word for i, word in enumerate(words) if i < first or i in moved]
    stray = [word for i, word in enumerate(words) if i >= first and i not in moved]
    # Invalid options are reported first, so that the corrected line works.
    parser.parse_args(options)
    name = words[first]
    if command is None:
        fixed = shlex.join(["am-repl", *options, "--", *stray])
        parser.error(
            f"{name!r} is a command, not an address, so put it after '--', "
            f"as in: {fixed}"
        )
    fixed = shlex.join(["am-repl", *options, "--", *command])
    parser.error(
        f"{name!r} is a command, not an address, and am-repl runs only the "
        f"command after '--', as in: {fixed}"
    )


def _read_token(args: argparse.Namespace) -> str | None:
    if args.token_file:
        try:
            token = Path(args.token_file).read_text(encoding="utf-8").strip()
        except OSError as err:
            raise AddressError(
                f"cannot read token file {args.token_file}: {err}"
            ) from None
        if not token:
            raise AddressError(f"token file {args.token_file} is empty")
        return token
    return os.environ.get(ENV_TOKEN) or None


def _reader(args: argparse.Namespace) -> Any:
    """Return a function that reads the current entries and problems."""
    if args.dir:
        return partial(read_directory, args.dir)
    if args.file:
        path = args.file

        def read_one_file() -> tuple[list[AddressEntry], list[str]]:
            return read_file(path), []

        return read_one_file
    entries = command_line_entries(args.addresses)
    return lambda: (entries, [])


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to the current ``sys.stderr``, so logs go above the shell's prompt."""

    @property  # type: ignore[override]
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, value: Any) -> None:
        pass


def _configure_logging(level: str) -> None:
    handler = _StderrHandler()
    handler.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(level)


async def _run_cli(
    args: argparse.Namespace, command: list[str], token: str | None
) -> int:
    output = Output(
        color=use_color(sys.stdout, args.no_color),
        error_color=use_color(sys.stderr, args.no_color),
    )
    # Connection failures are reported below, once every attempt finished.
    pool = Pool(
        token=token,
        connect_timeout=args.connect_timeout,
        call_timeout=args.call_timeout,
        reconnect=False,
    )
    runner = Runner(pool, output)
    try:
        entries, problems = _reader(args)()
        for problem in problems:
            output.error(problem)
        await pool.apply(entries)
        await pool.wait_first_attempts()
        links = pool.links
        connected = [link for link in links if link.connected]
        failed = [link for link in links if not link.connected]
        if failed and (args.req_all or not connected):
            for link in failed:
                output.error(f"cannot connect to {link.where}: {link.error}")
            output.error(
                "check that the server is running and the address is current "
                "(servers rewrite their address files when they restart)"
            )
            return EXIT_ERROR
        if not links and command[0] not in ("help", "cheatsheet"):
            where = args.dir or args.file
            output.error(
                f"no endpoint addresses found in {where}: start a server that "
                "writes its address there (such as am-demo), or check the path"
            )
            return EXIT_ERROR
        if failed:
            logger.warning(
                "%d of %d endpoints not connected: %s",
                len(failed),
                len(links),
                "; ".join(f"{link.where}: {link.error}" for link in failed),
            )
        return await runner.run_argv(command)
    finally:
        await runner.close()
        await pool.close()


async def run_interactive(
    args: argparse.Namespace,
    token: str | None,
    *,
    output: Output | None = None,
    prompt_input: Any = None,
    prompt_output: Any = None,
) -> int:
    """Run the interactive shell with the parsed options until it exits.

    Tests pass `output` and prompt_toolkit's `prompt_input` and `prompt_output`
    (a pipe input and ``DummyOutput``); stdout is then left unpatched.
    """
    from prompt_toolkit.patch_stdout import patch_stdout

    from ._shell import default_history_path, open_history, run_shell

    shell_output = output or Output(
        color=use_color(sys.stdout, args.no_color),
        error_color=use_color(sys.stderr, args.no_color),
    )

    def on_event(message: str, error: bool) -> None:
        if error:
            shell_output.error(message)
        else:
            shell_output.result(message)

    pool = Pool(
        token=token,
        connect_timeout=args.connect_timeout,
        call_timeout=args.call_timeout,
        reconnect=True,
        on_event=on_event,
    )
    runner = Runner(pool, shell_output, background_waits=True)
    watcher = AddressWatcher(
        _reader(args), pool.apply, shell_output.error, args.poll_interval
    )
    history_path = None
    if not args.no_history:
        history_path = Path(args.history) if args.history else default_history_path()
    patch = patch_stdout(raw=True) if prompt_input is None else contextlib.nullcontext()
    watch_task = None
    with patch:
        try:
            await watcher.poll_once()
            if args.watch and (args.dir or args.file):
                watch_task = asyncio.get_running_loop().create_task(watcher.run())
            return await run_shell(
                runner,
                history=open_history(history_path),
                vi_mode=args.vi,
                input=prompt_input,
                output=prompt_output,
            )
        finally:
            if watch_task is not None:
                watch_task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await watch_task
            await runner.close()
            await pool.close()


async def _run_until_signal(
    args: argparse.Namespace, command: list[str] | None, token: str | None
) -> int:
    """Run the shell or the command; SIGTERM (and Ctrl-C in CLI mode) stop it."""
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    assert task is not None
    received: list[int] = []

    def stop(signum: int) -> None:
        received.append(signum)
        task.cancel()

    signals = [signal.SIGTERM] if command is None else [signal.SIGTERM, signal.SIGINT]
    for signum in signals:
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(signum, stop, signum)
    try:
        if command is None:
            return await run_interactive(args, token)
        return await _run_cli(args, command, token)
    except asyncio.CancelledError:
        if not received:
            raise
        # Cleanup ran in the finally blocks above; report how we stopped.
        task.uncancel()
        name = "SIGTERM" if received[0] == signal.SIGTERM else "interrupt"
        logger.info("stopped by %s", name)
        return EXIT_TERMINATED if received[0] == signal.SIGTERM else EXIT_INTERRUPTED


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``am-repl``; return the exit status."""
    args, command = parse_args(sys.argv[1:] if argv is None else argv)
    _configure_logging(args.log_level)
    try:
        token = _read_token(args)
        if command is None:
            # Check the source once before the shell starts, for a clear error.
            _reader(args)
            if args.dir:
                require_directory(args.dir)
            if args.file and not Path(args.file).is_file():
                raise AddressError(f"address file {args.file} does not exist")
    except AddressError as err:
        Output(color=use_color(sys.stderr, args.no_color)).error(str(err))
        return EXIT_ERROR
    try:
        return asyncio.run(_run_until_signal(args, command, token))
    except AddressError as err:
        Output(color=use_color(sys.stderr, args.no_color)).error(str(err))
        return EXIT_ERROR
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
