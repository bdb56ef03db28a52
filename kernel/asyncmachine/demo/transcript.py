"""A transcript of the demo: transitions and printed lines, with times.

``TranscriptTracer`` records each transition that changed a clock as a line
such as ``+1.532s  server-foo          +Bored``. A transition gets its place in
the transcript when it starts, so lines printed by its handlers, and
transitions it caused on the other machine, come after it.
"""

from __future__ import annotations

import sys
import time
from typing import Any, TextIO

import asyncmachine as am

# The width of the machine id column: "browser-bar-" plus a 6-character id.
ID_WIDTH = 18


class _Entry:
    __slots__ = ("elapsed", "mach_id", "text")

    def __init__(self, elapsed: float, mach_id: str, text: str | None) -> None:
        self.elapsed = elapsed
        self.mach_id = mach_id
        # None until the transition ends, and for transitions left out.
        self.text = text

    def format(self) -> str:
        return f"{self.elapsed:+8.3f}s  {self.mach_id:<{ID_WIDTH}}  {self.text}"


class Transcript:
    """Lines of the demo in the order they happened, timed from creation.

    Args:
        output: the stream that ``say`` prints to; None for standard output at
            the time of each call.
    """

    def __init__(self, output: TextIO | None = None) -> None:
        self._start = time.monotonic()
        self._entries: list[_Entry] = []
        self._output = output

    def elapsed(self) -> float:
        """Return the seconds since the transcript was created."""
        return time.monotonic() - self._start

    def reserve(self, mach_id: str) -> _Entry:
        """Append an entry without text, to be filled in later."""
        entry = _Entry(self.elapsed(), mach_id, None)
        self._entries.append(entry)
        return entry

    def record(self, mach_id: str, text: str) -> None:
        """Append a line on behalf of a machine."""
        self._entries.append(_Entry(self.elapsed(), mach_id, text))

    def say(self, mach_id: str, text: str) -> None:
        """Print a line as a machine's output and record it as ``> text``."""
        self.echo(text)
        self.record(mach_id, "> " + text)

    def echo(self, text: str) -> None:
        """Print a line to the output without recording it."""
        output = self._output if self._output is not None else sys.stdout
        print(text, file=output, flush=True)

    def lines(self) -> list[str]:
        """Return the formatted lines, leaving out entries without text."""
        return [entry.format() for entry in self._entries if entry.text is not None]

    def text(self) -> str:
        """Return the formatted lines as one string ending with a newline."""
        return "".join(line + "\n" for line in self.lines())


def describe_changes(
    names: tuple[str, ...], before: list[int], after: list[int]
) -> str:
    """Describe clock changes as ``+Msg -Bored``: activations, then deactivations.

    A state whose tick changed and is odd (active) counts as activated, which
    includes the re-entry of an active Multi state.
    """
    added = []
    removed = []
    for name, tick_before, tick_after in zip(names, before, after, strict=True):
        if tick_before == tick_after:
            continue
        if tick_after % 2 == 1:
            added.append("+" + name)
        else:
            removed.append("-" + name)
    return " ".join(added + removed)


def format_args(args: dict[str, Any] | None) -> str:
    """Format the plain values of a mutation's args as ``key='value'`` pairs."""
    if not args:
        return ""
    pairs = []
    for key, value in args.items():
        if isinstance(value, str | int | float | bool):
            pairs.append(f"{key}={value!r}")
    return " ".join(pairs)


class TranscriptTracer(am.Tracer):
    """Records one machine's transitions in a ``Transcript``.

    Accepted transitions that changed no tick are left out. Canceled ones are
    recorded as ``canceled add SubmitMsg``, except checks (``can_add``).
    """

    def __init__(self, transcript: Transcript, machine: am.Machine) -> None:
        self._transcript = transcript
        self._machine = machine
        self._entries: dict[int, _Entry] = {}

    def transition_start(self, tx: Any) -> None:
        self._entries[id(tx)] = self._transcript.reserve(self._machine.id)

    def transition_end(self, tx: Any, result: Any = None) -> None:
        entry = self._entries.pop(id(tx), None)
        if entry is None:
            entry = self._transcript.reserve(self._machine.id)
        mutation = tx.mutation
        if not tx.accepted:
            if not mutation.check:
                called = " ".join(mutation.called)
                entry.text = f"canceled {mutation.type} {called}"
            return

        changes = describe_changes(
            self._machine.state_names(), tx.time_before, tx.time_after
        )
        if not changes:
            return
        details = format_args(mutation.args)
        source = mutation.source
        if source is not None and source.mach_id != self._machine.id:
            details = f"{details} from={source.mach_id}".strip()
        entry.text = f"{changes}  {details}" if details else changes
