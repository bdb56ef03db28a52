"""Output of the shell: result lines, blocks, errors, and when to use colour."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import TextIO

__all__ = ["Output", "use_color", "format_states", "format_time"]

_GREY = "\x1b[90m"
_RED = "\x1b[31m"
_RESET = "\x1b[0m"

RESULT_PREFIX = "=> "
ERROR_PREFIX = "err> "


def use_color(stream: TextIO, disabled: bool = False) -> bool:
    """Return whether to colour: a terminal, no ``NO_COLOR`` and not `disabled`."""
    if disabled or os.environ.get("NO_COLOR"):
        return False
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())


def _current_stdout() -> TextIO:
    return sys.stdout


def _current_stderr() -> TextIO:
    return sys.stderr


class Output:
    """Writes command output: ``=> `` results, plain blocks and ``err> `` errors.

    The streams are looked up on every write, so that output goes through
    prompt_toolkit's ``patch_stdout`` proxy (printed above the prompt) when the
    shell runs inside it.

    Args:
        color: Colour the result prefix with ANSI escapes.
        stdout: Returns the stream for results; default ``sys.stdout``.
        stderr: Returns the stream for errors; default ``sys.stderr``.
        error_color: Colour the error prefix; default: as `color`.
    """

    def __init__(
        self,
        color: bool = False,
        stdout: Callable[[], TextIO] = _current_stdout,
        stderr: Callable[[], TextIO] = _current_stderr,
        error_color: bool | None = None,
    ) -> None:
        self.color = color
        self.error_color = color if error_color is None else error_color
        self._stdout = stdout
        self._stderr = stderr

    def _write(self, stream: TextIO, text: str) -> None:
        stream.write(text + "\n")
        stream.flush()

    def result(self, text: str) -> None:
        """Write a one-line result, prefixed with ``=> ``."""
        prefix = f"{_GREY}{RESULT_PREFIX}{_RESET}" if self.color else RESULT_PREFIX
        self._write(self._stdout(), prefix + text)

    def block(self, text: str) -> None:
        """Write lines as they are (listings, inspect, help)."""
        self._write(self._stdout(), text.rstrip("\n"))

    def error(self, text: str) -> None:
        """Write an error, prefixed with ``err> ``."""
        prefix = f"{_RED}{ERROR_PREFIX}{_RESET}" if self.error_color else ERROR_PREFIX
        self._write(self._stderr(), prefix + text)


def format_states(
    names: tuple[str, ...], time: tuple[int, ...], show_inactive: bool = False
) -> str:
    """Format a clock like ``(A:1 C:3)``, with ``[B:0 D:2]`` when `show_inactive`."""
    active = " ".join(
        f"{name}:{tick}" for name, tick in zip(names, time, strict=True) if tick % 2
    )
    text = f"({active})"
    if show_inactive:
        inactive = " ".join(
            f"{name}:{tick}"
            for name, tick in zip(names, time, strict=True)
            if not tick % 2
        )
        text += f" [{inactive}]"
    return text


def format_time(ticks: tuple[int, ...] | list[int]) -> str:
    """Format ticks like ``[1 0 3]``."""
    return "[" + " ".join(str(tick) for tick in ticks) + "]"
