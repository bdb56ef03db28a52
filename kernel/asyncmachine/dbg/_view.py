"""What the debugger shows: selection, filters, search and the text of each pane.

:class:`DebuggerView` uses no prompt_toolkit objects, so that navigation and
rendering can be tested without a terminal; ``tui.py`` draws it.
"""

from __future__ import annotations

import datetime
import logging
from collections.abc import Callable
from typing import Any

from ..history import TxRecord
from ._collector import Collector, MachineData

__all__ = ["HELP", "DebuggerView"]

logger = logging.getLogger("asyncmachine.dbg")

# (style, text) fragments, as prompt_toolkit's formatted text.
Fragments = list[Any]

HELP = [
    ("up/down, k/j", "select the previous or next machine"),
    ("left/right, h/l", "step back or forward through this machine's transitions"),
    ("[ / ]", "step back or forward through all machines in time order"),
    ("pageup/pagedown", "step 100 transitions back or forward"),
    ("home/end", "go to the first or last transition"),
    ("t", "tail mode: follow new transitions"),
    ("c / a / e", "hide canceled / auto / empty transitions (toggle)"),
    ("/", "search called states, targets, log lines and ids"),
    ("n / N", "go to the next or previous search match"),
    ("s / S", "select the next or previous state"),
    ("> / <", "go to the next or previous transition touching that state"),
    ("x", "export a dump file"),
    ("i", "import a dump file"),
    ("?", "show or hide this help"),
    ("q, ctrl-c", "quit"),
]


def _format_time(value: float) -> str:
    moment = datetime.datetime.fromtimestamp(value)
    return moment.strftime("%H:%M:%S.%f")[:-3]


class DebuggerView:
    """The debugger's state and the text of its panes.

    Args:
        collector: where machines and transitions come from.
        dump_path: the default file for export and import.
    """

    def __init__(
        self, collector: Collector, dump_path: str = "am-dbg.jsonl.gz"
    ) -> None:
        self.collector = collector
        self.dump_path = dump_path
        self.mach_id: str | None = None
        # Selected sequence number per machine; None follows the newest.
        self.selected: dict[str, int | None] = {}
        self.tail = True
        self.hide_canceled = False
        self.hide_auto = False
        self.hide_empty = False
        self.search = ""
        self.state: str | None = None
        self.show_help = False
        self.message = ""
        # The prompt's purpose ("search", "export", "import") while it is open.
        self.prompt: str | None = None
        self._cache_key: Any = None
        self._cache: list[int] = []

    # Selection

    def machine(self) -> MachineData | None:
        """Return the selected machine, selecting the first one if needed."""
        machines = self.collector.machines
        if self.mach_id not in machines:
            self.mach_id = next(iter(machines), None)
        return machines.get(self.mach_id) if self.mach_id is not None else None

    def select_machine(self, delta: int) -> None:
        """Select the machine `delta` places down (negative: up) the list."""
        ids = list(self.collector.machines)
        if not ids:
            return
        current = self.machine()
        position = ids.index(current.id) if current is not None else 0
        self.mach_id = ids[max(0, min(len(ids) - 1, position + delta))]
        self.state = None

    def visible(self) -> list[int]:
        """Return the sequence numbers of the selected machine's shown transitions."""
        data = self.machine()
        if data is None:
            return []
        history = data.history
        key = (
            data.id,
            self.collector.generation,
            history.first_seq,
            history.end_seq,
            self.hide_canceled,
            self.hide_auto,
            self.hide_empty,
        )
        if key == self._cache_key:
            return self._cache
        seqs = []
        seq = history.first_seq
        for record in history.records():
            if self._shown(record):
                seqs.append(seq)
            seq += 1
        self._cache_key = key
        self._cache = seqs
        return seqs

    def _shown(self, record: TxRecord) -> bool:
        if self.hide_canceled and record.result != 0:
            return False
        if self.hide_auto and record.auto:
            return False
        return not (self.hide_empty and record.clock_before == record.clock_after)

    def current_seq(self) -> int | None:
        """Return the selected transition's sequence number, or None if none."""
        data = self.machine()
        if data is None:
            return None
        seqs = self.visible()
        if not seqs:
            return None
        chosen = self.selected.get(data.id)
        if self.tail or chosen is None:
            return seqs[-1]
        # The nearest shown transition at or before the chosen one.
        for seq in reversed(seqs):
            if seq <= chosen:
                return seq
        return seqs[0]

    def current(self) -> TxRecord | None:
        """Return the selected transition."""
        seq = self.current_seq()
        data = self.machine()
        if seq is None or data is None:
            return None
        return data.history.get(seq)

    def _select_seq(self, seq: int) -> None:
        data = self.machine()
        if data is None:
            return
        self.selected[data.id] = seq
        self.tail = False

    def step(self, delta: int) -> None:
        """Move `delta` shown transitions forward (negative: back)."""
        seqs = self.visible()
        current = self.current_seq()
        if not seqs or current is None:
            return
        position = seqs.index(current) if current in seqs else len(seqs) - 1
        self._select_seq(seqs[max(0, min(len(seqs) - 1, position + delta))])

    def first(self) -> None:
        """Select the first shown transition."""
        seqs = self.visible()
        if seqs:
            self._select_seq(seqs[0])

    def last(self) -> None:
        """Select the last shown transition."""
        seqs = self.visible()
        if seqs:
            self._select_seq(seqs[-1])

    def toggle_tail(self) -> None:
        """Follow new transitions, or stop following them."""
        self.tail = not self.tail
        if not self.tail:
            seq = self.current_seq()
            if seq is not None:
                self._select_seq(seq)

    def step_global(self, delta: int) -> None:
        """Move one transition through all machines in time order.

        The machine of the reached transition becomes the selected one. Filters
        do not apply here, so each machine's stream is complete.
        """
        timeline = self.collector.timeline()
        if not timeline:
            return
        data = self.machine()
        current = self.current_seq()
        position = None
        if data is not None and current is not None:
            for i, (_time, _order, mach_id, seq) in enumerate(timeline):
                if mach_id == data.id and seq == current:
                    position = i
                    break
        if position is None:
            position = 0 if delta > 0 else len(timeline) - 1
        else:
            position = max(0, min(len(timeline) - 1, position + delta))
        _time, _order, mach_id, seq = timeline[position]
        self.mach_id = mach_id
        self.selected[mach_id] = seq
        self.tail = False
        if seq not in self.visible():
            # A filter hides it: show everything so the selection is visible.
            self.hide_canceled = self.hide_auto = self.hide_empty = False

    def find(self, forward: bool = True) -> bool:
        """Select the next (or previous) transition matching :attr:`search`."""
        data = self.machine()
        if data is None or not self.search:
            return False
        needle = self.search.lower()
        seqs = self.visible()
        current = self.current_seq()
        ordered = seqs if forward else list(reversed(seqs))
        started = current is None
        for seq in ordered:
            if not started:
                started = seq == current
                continue
            record = data.history.get(seq)
            if record is not None and self._matches(record, needle):
                self._select_seq(seq)
                self.message = f"found {self.search!r} in transition {record.id}"
                return True
        self.message = f"no more matches for {self.search!r}"
        return False

    @staticmethod
    def _matches(record: TxRecord, needle: str) -> bool:
        if needle in record.id.lower():
            return True
        for name in record.called + record.targets:
            if needle in name.lower():
                return True
        return any(needle in line.lower() for line in record.log)

    def select_state(self, delta: int) -> None:
        """Select the next (or previous) state of the machine."""
        data = self.machine()
        if data is None:
            return
        states = data.schema.states
        if self.state in states:
            position = states.index(self.state) + delta
        else:
            position = 0 if delta > 0 else len(states) - 1
        self.state = states[position % len(states)]

    def jump_touching(self, forward: bool = True) -> bool:
        """Select the next (or previous) transition touching the selected state."""
        data = self.machine()
        if data is None or self.state is None:
            self.message = "select a state first (s)"
            return False
        index = data.schema.index.get(self.state)
        if index is None:
            return False
        seqs = self.visible()
        current = self.current_seq()
        ordered = seqs if forward else list(reversed(seqs))
        started = current is None
        for seq in ordered:
            if not started:
                started = seq == current
                continue
            record = data.history.get(seq)
            if record is not None and record.touches(self.state, index):
                self._select_seq(seq)
                return True
        self.message = f"no more transitions touching {self.state}"
        return False

    # Dumps

    def export(self, path: str) -> bool:
        """Write a dump; the outcome goes to :attr:`message`."""
        try:
            target = self.collector.dump(path)
        except OSError as err:
            self.message = f"export failed: {err}"
            logger.error("export to %s failed: %s", path, err)
            return False
        self.dump_path = path
        self.message = f"exported {len(self.collector.machines)} machines to {target}"
        return True

    def import_(self, path: str) -> bool:
        """Read a dump into the collector; the outcome goes to :attr:`message`."""
        try:
            dump = self.collector.load(path)
        except (OSError, ValueError) as err:
            self.message = f"import failed: {err}"
            logger.error("import of %s failed: %s", path, err)
            return False
        self.dump_path = path
        self.message = f"imported {len(dump.machines)} machines from {path}"
        return True

    # Pane text

    def render_title(self) -> Fragments:
        """Return the title bar."""
        collector = self.collector
        where = collector.address if collector.running else "not listening"
        if collector.ws_url is not None:
            where = f"{where}, {collector.ws_url}"
        mode = "tail" if self.tail else "paused"
        filters = [
            name
            for name, on in (
                ("-canceled", self.hide_canceled),
                ("-auto", self.hide_auto),
                ("-empty", self.hide_empty),
            )
            if on
        ]
        text = (
            f" am-dbg  {where}  machines: {len(collector.machines)}  "
            f"connections: {collector.connections}  {mode}"
        )
        if filters:
            text += "  filters: " + " ".join(filters)
        if self.search:
            text += f"  search: {self.search}"
        return [("class:title", text)]

    def render_machines(self) -> Fragments:
        """Return the machine list."""
        selected = self.machine()
        out: Fragments = []
        for mach_id, data in self.collector.machines.items():
            marker = ">" if selected is not None and mach_id == selected.id else " "
            if data.disposed:
                status = "x"
            elif data.connected:
                status = "*"
            else:
                status = "-"
            style = "class:selected" if marker == ">" else ""
            errored = data.history.end_seq > 0 and self._errored(data)
            if errored:
                style += " class:error"
            count = len(data.history)
            line = f"{marker}{status} {mach_id} ({count})"
            if data.dropped:
                line += f" dropped:{data.dropped}"
            out.append((style, line + "\n"))
        if not out:
            out.append(("class:dim", " waiting for machines\n"))
        return out

    @staticmethod
    def _errored(data: MachineData) -> bool:
        history = data.history
        last = history.get(history.end_seq - 1)
        index = data.schema.index.get("Exception")
        return (
            last is not None and index is not None and last.tick_after(index) % 2 == 1
        )

    def render_states(self) -> Fragments:
        """Return the states of the machine with their ticks at the selection."""
        data = self.machine()
        if data is None:
            return []
        record = self.current()
        schema = data.schema
        out: Fragments = []
        for i, name in enumerate(schema.states):
            if record is not None:
                tick = record.tick_after(i)
                if record.activated(i):
                    change = "+"
                elif record.deactivated(i):
                    change = "-"
                else:
                    change = " "
                called = "c" if name in record.called else " "
            else:
                tick = schema.clock[i] if i < len(schema.clock) else 0
                change = called = " "
            active = tick % 2 == 1
            style = "class:active" if active else ""
            if name == self.state:
                style += " class:selected"
            if active and (name == "Exception" or name.startswith("Err")):
                style += " class:error"
            mark = "o" if active else "."
            out.append((style, f"{change}{called}{mark} {name} {tick}\n"))
        return out

    def transition_lines(self, around: int = 200) -> tuple[Fragments, int]:
        """Return the transition list near the selection and the selected line."""
        data = self.machine()
        if data is None:
            return [], 0
        seqs = self.visible()
        current = self.current_seq()
        if not seqs or current is None:
            return [("class:dim", " no transitions\n")], 0
        position = seqs.index(current) if current in seqs else len(seqs) - 1
        start = max(0, position - around)
        out: Fragments = []
        for seq in seqs[start : position + around]:
            record = data.history.get(seq)
            if record is None:
                continue
            style = "class:selected" if seq == current else ""
            if record.result != 0:
                style += " class:canceled"
            out.append((style, self._transition_line(seq, record) + "\n"))
        return out, position - start

    @staticmethod
    def _transition_line(seq: int, record: TxRecord) -> str:
        flags = ""
        if record.auto:
            flags += " auto"
        if record.sync:
            flags += " sync"
        if record.check:
            flags += " check"
        result = "" if record.result == 0 else " canceled"
        return (
            f"{seq + 1:>6} {_format_time(record.time)} [{record.type}] "
            f"{' '.join(record.called)}{flags}{result}"
        )

    def render_details(self) -> Fragments:
        """Return the selected transition's details and log, or the help."""
        if self.show_help:
            help_lines: Fragments = [("class:title", " keys\n")]
            help_lines += [("", f" {keys:<18} {text}\n") for keys, text in HELP]
            return help_lines
        record = self.current()
        data = self.machine()
        if record is None or data is None:
            return [("class:dim", " no transition selected\n")]
        seq = self.current_seq()
        before_sum = sum(record.clock_before)
        after_sum = sum(record.clock_after)
        source = record.source
        lines = [
            f" transition {record.id} (#{(seq or 0) + 1}) of {record.mach}  "
            f"{_format_time(record.time)}",
            f" [{record.type}] {' '.join(record.called)} -> "
            f"{'executed' if record.result == 0 else 'canceled'}"
            f"{'  auto' if record.auto else ''}",
            f" time {before_sum} -> {after_sum} (+{after_sum - before_sum})  "
            f"queue tick {record.queue_tick}",
            f" before: {' '.join(record.before) or '-'}",
            f" targets: {' '.join(record.targets) or '-'}",
            f" args: {', '.join(record.args) or '-'}",
        ]
        if source is not None:
            lines.append(
                f" source: {source.mach_id}/{source.tx_id} (time {source.mach_time})"
            )
        lines.append(" log:" if record.log else " log: -")
        lines += [f"   {line}" for line in record.log]
        return [("", line + "\n") for line in lines]

    def render_status(self) -> Fragments:
        """Return the status line: the last message and the main keys."""
        keys = "?:help q:quit h/l:step [/]:all machines /:search x:export i:import"
        if self.prompt is not None:
            keys = "enter: accept  escape: cancel"
        text = f" {self.message}  |  {keys}" if self.message else f" {keys}"
        return [("class:status", text)]

    def listener(self) -> Callable[[Collector], None]:
        """Return a collector listener that clears the selection cache."""

        def changed(_collector: Collector) -> None:
            self._cache_key = None

        return changed
