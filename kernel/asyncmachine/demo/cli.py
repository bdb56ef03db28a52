"""The ``am-demo`` command (``python -m asyncmachine.demo``).

Three modes:

- default: serve ``server-foo``, the relay and the offline JupyterLite page
  until Ctrl-C or SIGTERM;
- ``--headless``: the same server, plus headless Chromium that runs the whole
  scenario in the page, then exit 0, or 1 naming the failed step;
- ``--local``: both machines in this process with a scripted user, then exit.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import errno
import logging
import secrets
import shutil
import signal
import sys
import tempfile
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING

from .run import DemoConfig, DemoResult, run_demo

if TYPE_CHECKING:
    from .server import DemoServer, ServerConfig

log = logging.getLogger("asyncmachine.demo")

DEFAULT_LISTEN = "127.0.0.1:12733"


@dataclass(frozen=True)
class Timings:
    """Hello and bored timings in seconds, with the hello limit."""

    hello_every: float
    hello_limit: int
    bored_after: float


# The server's defaults keep a person's pace. The headless run needs a hello
# and foo's boredom within seconds: with 3 user messages (Msg tick 5) a limit
# of 10 allows 3 hellos, after which foo gets bored.
SERVER_TIMINGS = Timings(hello_every=10.0, hello_limit=20, bored_after=15.0)
HEADLESS_TIMINGS = Timings(hello_every=1.0, hello_limit=10, bored_after=3.0)


def _positive(text: str) -> float:
    value = float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a number above 0, got {text}")
    return value


def _not_negative(text: str) -> float:
    value = float(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a number of 0 or more, got {text}")
    return value


def _not_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(
            f"expected an integer of 0 or more, got {text}"
        )
    return value


def _address(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise argparse.ArgumentTypeError(
            f"expected HOST:PORT such as 127.0.0.1:12733, got {text!r}"
        )
    if int(port) > 65535:
        raise argparse.ArgumentTypeError(
            f"port {port} in {text!r} is out of range: use 1 to 65535, or 0 for "
            "any free port"
        )
    return host.strip("[]"), int(port)


def _version() -> str:
    try:
        return metadata.version("asyncmachine")
    except metadata.PackageNotFoundError:
        return "unknown (not installed)"


def build_parser() -> argparse.ArgumentParser:
    """Return the parser of ``am-demo``."""
    local = DemoConfig()
    parser = argparse.ArgumentParser(
        prog="am-demo",
        description=(
            "Run the foo/bar example: server-foo here, browser-bar-<id> in the "
            "bar notebook of the offline JupyterLite page that this command "
            "serves through its relay. Prints the page's URL and the am-repl "
            "command, and serves until Ctrl-C or SIGTERM. The site is built "
            "first when it is missing or out of date."
        ),
    )
    parser.add_argument("--version", action="version", version=_version())
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument(
        "--headless",
        action="store_true",
        help="run the whole scenario in headless Chromium (/usr/bin/chromium) and "
        "exit 0, or 1 naming the step that failed",
    )
    mode.add_argument(
        "--local",
        action="store_true",
        help="run both machines in this process with a scripted user, print a "
        "transcript and exit (no browser, no network)",
    )

    server = parser.add_argument_group("server")
    server.add_argument(
        "--listen",
        type=_address,
        default=None,
        metavar="HOST:PORT",
        help=f"address of the relay; port 0 picks a free one (default: "
        f"{DEFAULT_LISTEN}, with --headless 127.0.0.1:0)",
    )
    server.add_argument(
        "--repl-dir",
        type=Path,
        metavar="DIR",
        help="directory of the REPL address files (default: "
        "~/.local/state/asyncmachine-demo/repl, with --headless a temporary one)",
    )
    server.add_argument(
        "--token",
        metavar="T",
        help="token of the page's WebSockets (default: made once and kept in "
        "~/.local/state/asyncmachine-demo/token, so open pages reconnect after "
        "a restart; with --headless a new one)",
    )
    server.add_argument(
        "--site",
        type=Path,
        metavar="DIR",
        help="serve this built JupyterLite site as it is (default: build/lite of "
        "a source checkout, otherwise $XDG_CACHE_HOME/asyncmachine/lite; built or "
        "updated first)",
    )
    server.add_argument(
        "--dump",
        type=Path,
        metavar="FILE",
        help="write the debugger's dump of the whole run to FILE at exit "
        "(for am-vis and am-dbg)",
    )

    timing = parser.add_argument_group("timing")
    timing.add_argument(
        "--hello-every",
        type=_positive,
        metavar="S",
        help=f"seconds between hellos (default: {SERVER_TIMINGS.hello_every:g}, "
        f"--headless {HEADLESS_TIMINGS.hello_every:g}, --local {local.hello_every})",
    )
    timing.add_argument(
        "--hello-limit",
        type=_not_negative_int,
        metavar="N",
        help="say hello to a page while its Msg tick is below N; the tick grows "
        f"by 2 per message (default: {SERVER_TIMINGS.hello_limit}, --headless "
        f"{HEADLESS_TIMINGS.hello_limit}, --local {local.hello_limit})",
    )
    timing.add_argument(
        "--bored-after",
        type=_positive,
        metavar="S",
        help="seconds without a message before foo is bored (default: "
        f"{SERVER_TIMINGS.bored_after:g}, --headless "
        f"{HEADLESS_TIMINGS.bored_after:g}, --local {local.bored_after})",
    )
    timing.add_argument(
        "--user-delay",
        type=_not_negative,
        default=local.user_delay,
        metavar="S",
        help=f"--local: seconds before each user message (default: {local.user_delay})",
    )
    timing.add_argument(
        "--timeout",
        type=_positive,
        default=None,
        metavar="S",
        help="--local and --headless: fail if the run takes longer than S seconds "
        "(default: --local 4 times its expected length plus 10, --headless 300)",
    )

    output = parser.add_argument_group("output")
    output.add_argument(
        "--transcript",
        type=Path,
        metavar="FILE",
        help="write the transcript to FILE at exit: one event per line, with "
        "the seconds since start and the machine id",
    )
    output.add_argument(
        "--log-level",
        choices=("debug", "info", "warning", "error"),
        default=None,
        help="level of the log on stderr (default: info, --local warning)",
    )
    return parser


def _timings(args: argparse.Namespace, defaults: Timings) -> Timings:
    return Timings(
        hello_every=args.hello_every or defaults.hello_every,
        hello_limit=(
            defaults.hello_limit if args.hello_limit is None else args.hello_limit
        ),
        bored_after=args.bored_after or defaults.bored_after,
    )


def _setup_logging(level_name: str) -> None:
    level = getattr(logging, level_name.upper())
    logging.basicConfig(
        level=logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    if level <= logging.DEBUG:
        logging.getLogger("asyncmachine").setLevel(level)
    for name in ("asyncmachine.demo", "asyncmachine.relay"):
        logging.getLogger(name).setLevel(level)


def main(argv: list[str] | None = None) -> int:
    """Run ``am-demo`` and return its exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.local:
        _setup_logging(args.log_level or "warning")
        return _main_local(args)
    _setup_logging(args.log_level or "info")
    return _main_server(parser, args)


# -- the server and the headless run ---------------------------------------------


# Third-party packages that the server side of am-demo imports.
_SERVER_PACKAGES = ("rpyc", "aiohttp", "prompt_toolkit", "graphviz")


def _main_server(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    try:
        from ._site import SiteError, ensure_site
        from ._state import default_repl_dir, load_or_create_token, state_dir
        from .server import ServerConfig
    except ModuleNotFoundError as err:
        if err.name not in _SERVER_PACKAGES:
            raise
        print(
            f"am-demo: the Python package {err.name} is missing; install the "
            "demo's dependencies with: pip install 'asyncmachine[demo]'",
            file=sys.stderr,
        )
        return 1

    headless = args.headless
    timings = _timings(args, HEADLESS_TIMINGS if headless else SERVER_TIMINGS)
    if args.listen is not None:
        host, port = args.listen
    else:
        host, port = _address("127.0.0.1:0" if headless else DEFAULT_LISTEN)

    try:
        site = ensure_site(args.site)
    except SiteError as err:
        print(f"am-demo: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("am-demo: interrupted while building the site", file=sys.stderr)
        return 130

    with contextlib.ExitStack() as stack:
        if args.token is not None:
            token = args.token
        elif headless:
            token = secrets.token_urlsafe(24)
        else:
            try:
                token = load_or_create_token(state_dir())
            except (OSError, ValueError) as err:
                parser.error(f"cannot read or create the token: {err}; pass --token")
        if args.repl_dir is not None:
            repl_dir = args.repl_dir
        elif headless:
            temporary = stack.enter_context(
                tempfile.TemporaryDirectory(prefix="am-demo-repl-")
            )
            repl_dir = Path(temporary)
        else:
            repl_dir = default_repl_dir()

        config = ServerConfig(
            site_dir=site,
            repl_dir=repl_dir,
            token=token,
            host=host,
            port=port,
            hello_every=timings.hello_every,
            hello_limit=timings.hello_limit,
            bored_after=timings.bored_after,
        )
        try:
            if headless:
                from .headless import HeadlessOptions, run_headless

                options = HeadlessOptions(
                    transcript=args.transcript,
                    dump=args.dump,
                    timeout=args.timeout or 300.0,
                )
                return asyncio.run(run_headless(config, options))
            return asyncio.run(_serve(config, args))
        except KeyboardInterrupt:
            # Without loop signal handlers (Windows) Ctrl-C cancels the run,
            # which still stops the server, and asyncio.run raises this.
            return 130


async def _serve(config: ServerConfig, args: argparse.Namespace) -> int:
    from .server import DemoServer

    server = DemoServer(config)
    try:
        await server.start()
    except OSError as err:
        address = f"{config.host}:{config.port}"
        if err.errno == errno.EADDRINUSE:
            print(
                f"am-demo: cannot listen on {address}: the address is already in "
                "use; stop the other server or pass --listen HOST:PORT (port 0 "
                "picks a free one)",
                file=sys.stderr,
            )
        elif err.errno == errno.EACCES:
            print(
                f"am-demo: cannot listen on {address}: permission denied; ports "
                "below 1024 usually need root, so pass --listen HOST:PORT with a "
                "port of 1024 or above (port 0 picks a free one)",
                file=sys.stderr,
            )
        else:
            print(f"am-demo: cannot start: {err.strerror or err}", file=sys.stderr)
        return 1

    stop = asyncio.Event()
    received: list[str] = []

    def request_stop(signal_number: signal.Signals) -> None:
        received.append(signal_number.name)
        stop.set()

    loop = asyncio.get_running_loop()
    for signal_number in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(signal_number, request_stop, signal_number)

    _print_banner(server, config.repl_dir, args.dump)
    status = 0
    try:
        await stop.wait()
        log.info("stopping on %s", received[0])
    finally:
        try:
            await server.stop(dump_path=args.dump)
        except OSError as err:
            print(f"am-demo: cannot write the dump: {err}", file=sys.stderr)
            status = 1
        if args.dump is not None and status == 0:
            print(f"debugger dump written to {args.dump}", flush=True)
        if args.transcript is not None:
            status = max(status, _write_transcript(args.transcript, server))
    return status


def _am_repl_command() -> str:
    """Return how to run am-repl: its name when PATH finds this installation's."""
    script = Path(sys.executable).parent / "am-repl"
    found = shutil.which("am-repl")
    if not script.is_file() or (
        found is not None and Path(found).resolve() == script.resolve()
    ):
        return "am-repl"
    # A virtual environment that is not activated: PATH has no am-repl, or
    # another installation's.
    return str(script)


def _print_banner(server: DemoServer, repl_dir: Path, dump: Path | None) -> None:
    if server.collector is None:
        collector = "none"
    elif dump is None:
        collector = f"{server.collector.address} (keep its history with --dump FILE)"
    else:
        collector = (
            f"{server.collector.address}, written to {dump} at exit "
            f"(then: am-dbg --import {dump})"
        )
    # The URL contains the token, so it is printed for the user and never logged.
    print(
        f"am-demo {_version()}: server-foo is running\n"
        f"  open the bar notebook:  {server.page_url}\n"
        f"  REPL of every machine:  {_am_repl_command()} -d {repl_dir}\n"
        f"  debugger collector:     {collector}\n"
        "Messages from the pages appear below. Stop with Ctrl-C.",
        flush=True,
    )


def _write_transcript(path: Path, server: DemoServer) -> int:
    try:
        path.write_text(server.transcript.text(), encoding="utf-8")
    except OSError as err:
        print(f"am-demo: cannot write the transcript: {err}", file=sys.stderr)
        return 1
    return 0


# -- the in-process mode ------------------------------------------------------


async def _run_until_signal(config: DemoConfig) -> DemoResult:
    """Run the demo; SIGTERM cancels it like Ctrl-C does."""
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    if task is not None:
        # Signal handlers exist only on Unix event loops.
        with contextlib.suppress(NotImplementedError, AttributeError):
            loop.add_signal_handler(signal.SIGTERM, task.cancel)
    return await run_demo(config)


def _main_local(args: argparse.Namespace) -> int:
    """Run both machines in this process, print the transcript, return the status."""
    defaults = DemoConfig()
    timings = _timings(
        args, Timings(defaults.hello_every, defaults.hello_limit, defaults.bored_after)
    )
    config = DemoConfig(
        hello_every=timings.hello_every,
        hello_limit=timings.hello_limit,
        bored_after=timings.bored_after,
        user_delay=args.user_delay,
        timeout=args.timeout,
    )
    try:
        result = asyncio.run(_run_until_signal(config))
    except KeyboardInterrupt:
        log.warning("demo interrupted before it finished")
        return 130
    except asyncio.CancelledError:
        log.warning("demo stopped by SIGTERM before it finished")
        return 143

    lines = list(result.transcript)
    # The transcript ends with the disposal of both machines, which removes
    # their states. The states below were read before that disposal.
    lines.append("")
    lines.append("states when the run ended, before disposal:")
    lines.extend(
        f"{mach_id}: {states}" for mach_id, states in result.final_states.items()
    )
    text = "".join(line + "\n" for line in lines)
    print()
    print("transcript:")
    print(text, end="")
    if args.transcript:
        try:
            Path(args.transcript).write_text(text)
        except OSError as error:
            print(f"error: cannot write the transcript: {error}", file=sys.stderr)
            return 1

    if result.error:
        print(f"error: {result.error}", file=sys.stderr)
        return 1
    return 0
