"""Command line of the in-process demo, ``python -m asyncmachine.demo``."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys
from importlib import metadata
from pathlib import Path

from .run import DemoConfig, DemoResult, run_demo

log = logging.getLogger("asyncmachine.demo")


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


def _version() -> str:
    try:
        return metadata.version("asyncmachine")
    except metadata.PackageNotFoundError:
        return "unknown (not installed)"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    defaults = DemoConfig()
    parser = argparse.ArgumentParser(
        prog="python -m asyncmachine.demo",
        description=(
            "Run server-foo and browser-bar-<id> in one process: a scripted user "
            "sends messages, foo sends hellos until bar's Msg tick reaches the limit, "
            "then foo gets bored. Prints a transcript and exits."
        ),
    )
    parser.add_argument(
        "--hello-every",
        type=_positive,
        default=defaults.hello_every,
        metavar="S",
        help=f"seconds between hellos (default: {defaults.hello_every})",
    )
    parser.add_argument(
        "--hello-limit",
        type=int,
        default=defaults.hello_limit,
        metavar="N",
        help=(
            "stop sending hellos once bar's Msg tick reaches N. The tick grows by 2 "
            f"per message (default: {defaults.hello_limit})"
        ),
    )
    parser.add_argument(
        "--bored-after",
        type=_positive,
        default=defaults.bored_after,
        metavar="S",
        help=f"seconds without a message before foo is bored "
        f"(default: {defaults.bored_after})",
    )
    parser.add_argument(
        "--user-delay",
        type=_not_negative,
        default=defaults.user_delay,
        metavar="S",
        help=f"seconds before each user message (default: {defaults.user_delay})",
    )
    parser.add_argument(
        "--timeout",
        type=_positive,
        default=None,
        metavar="S",
        help="fail if the run takes longer than S seconds "
        "(default: 4 times the expected length plus 10)",
    )
    parser.add_argument(
        "--transcript", metavar="FILE", help="also write the transcript to FILE"
    )
    parser.add_argument(
        "--log-level",
        default="WARNING",
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        help="level of the log on stderr (default: WARNING)",
    )
    parser.add_argument("--version", action="version", version=_version())
    return parser.parse_args(argv)


async def _run_until_signal(config: DemoConfig) -> DemoResult:
    """Run the demo; SIGTERM cancels it like Ctrl-C does."""
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    if task is not None:
        # Signal handlers exist only on Unix event loops.
        with contextlib.suppress(NotImplementedError, AttributeError):
            loop.add_signal_handler(signal.SIGTERM, task.cancel)
    return await run_demo(config)


def main(argv: list[str] | None = None) -> int:
    """Run the demo, print its transcript and return the exit status."""
    args = parse_args(argv)
    logging.basicConfig(
        level=args.log_level, format="%(name)s %(levelname)s %(message)s"
    )
    config = DemoConfig(
        hello_every=args.hello_every,
        hello_limit=args.hello_limit,
        bored_after=args.bored_after,
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
    lines.append("")
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
