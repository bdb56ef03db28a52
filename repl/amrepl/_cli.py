"""The ``am-repl`` command: options, CLI mode (one command) and shell mode."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
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
)
from ._commands import EXIT_ERROR, Runner
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

_EPILOG = """\
examples:
  am-repl 127.0.0.1:7001
  am-repl -d /tmp/am-repl
  am-repl -d /tmp/am-repl -- add server-foo Msg --arg msg=hi
  am-repl -d /tmp/am-repl -- list -a Ready

The token for endpoints that require one is read from $AM_REPL_TOKEN or
--token-file."""


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
    args = parser.parse_args(words)
    sources = sum(1 for given in (args.addresses, args.file, args.dir) if given)
    if sources == 0:
        parser.error("give endpoint addresses, -f FILE or -d DIR")
    if sources > 1:
        parser.error("give only one of: addresses, -f FILE, -d DIR")
    if command is not None and not command:
        parser.error("no command after '--'; e.g. '-- list'")
    return args, command


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
            if not links:
                output.error("no endpoint addresses found")
            return EXIT_ERROR
        if not links and command[0] not in ("help", "cheatsheet"):
            where = args.dir or args.file
            output.error(f"no endpoint addresses found in {where}")
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
            if args.dir and not Path(args.dir).is_dir():
                raise AddressError(f"address directory {args.dir} does not exist")
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
