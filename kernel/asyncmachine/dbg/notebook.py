"""A notebook inspector: step through a machine's recorded transitions.

The inspector shows ipywidgets controls (a machine dropdown, a slider over the
selected machine's transitions, previous and next buttons) above a summary of
the transition and the machine's diagram after it. Each diagram comes from the
machine rebuilt as am-vis does it: ``am.Machine`` from the schema record, set to
the clock after the transition with ``sync_clock``, drawn with
:func:`asyncmachine.vis.machine_graph` and :func:`asyncmachine.vis.to_svg`.

Usage, in a notebook cell::

    from asyncmachine import dbg

    dbg.inspector(collector)                            # a live Collector
    dbg.inspector("session.jsonl.gz", machine_id="worker")  # a dump file
    dbg.inspector(history.track(mach))                  # one machine's history

Needs ipywidgets (``pip install ipywidgets``) and graphviz's ``dot`` program.
Besides the widgets, the inspector's display carries the current diagram as SVG
and the summary as text, which static notebook viewers show instead.
"""

from __future__ import annotations

import contextlib
import datetime
import html
import os
from collections import OrderedDict
from collections.abc import Callable, Iterator
from typing import Any

from .. import _machine
from ..history import Dump, History, MachineDump, TxRecord, read_dump
from ._collector import Collector

__all__ = ["Inspector", "clock_text", "inspector", "transition_summary"]

# Diagrams kept per inspector; drawing one runs graphviz's dot program.
_SVG_CACHE_SIZE = 64
# Variables that make every new machine report to a debugger or a REPL; a
# rebuilt machine must not, or it would take the place of the live one there.
_ENV_HOOKS = ("AM_DBG_ADDR", "AM_REPL_DIR")


def inspector(
    source: Collector | History | Dump | MachineDump | str | os.PathLike[str],
    machine_id: str | None = None,
) -> Inspector:
    """Return an :class:`Inspector` of `source`; display it in a notebook cell.

    Args:
        source: a :class:`~asyncmachine.dbg.Collector` (live: its refresh
            button reads new transitions), a dump file path, a loaded
            :class:`~asyncmachine.history.Dump`, a history such as
            ``history.track(mach)`` or a list of histories.
        machine_id: the machine to show first; default: the first machine.

    Raises:
        ImportError: ipywidgets is not installed.
        KeyError: `machine_id` is not in the source.
        TypeError: `source` is not one of the accepted types.
    """
    return Inspector(source, machine_id)


class Inspector:
    """Widgets that show one machine of a source at one transition.

    Position ``n`` of the slider is the machine after its ``n``-th kept
    transition; position 0 is its schema record's clock, before the first kept
    transition.

    Attributes:
        dropdown: selects the machine.
        slider: selects the position.
        previous_button: moves one transition back.
        next_button: moves one transition forward.
        refresh_button: reads the source again; only for live sources.
        summary: the transition's summary, an ``ipywidgets.HTML``.
        diagram: the machine's diagram, an ``ipywidgets.HTML`` holding the SVG.
        widget: the box with all of the above, which the notebook displays.
    """

    def __init__(self, source: Any, machine_id: str | None = None) -> None:
        widgets = _import_widgets()
        self._load, self.live = _loader(source)
        self._machines: dict[str, MachineDump] = {}
        self._svg_cache: OrderedDict[tuple[str, str], str] = OrderedDict()
        self._read_source()
        if machine_id is not None and machine_id not in self._machines:
            known = ", ".join(self._machines) or "none"
            raise KeyError(
                f"no machine {machine_id!r} in the source; machines: {known}"
            )
        first = machine_id or next(iter(self._machines), None)

        self.dropdown = widgets.Dropdown(
            options=list(self._machines), value=first, description="Machine"
        )
        self.previous_button = widgets.Button(
            description="Previous", icon="step-backward", tooltip="Previous transition"
        )
        self.slider = widgets.IntSlider(
            min=0, max=0, value=0, description="Transition", continuous_update=False
        )
        self.next_button = widgets.Button(
            description="Next", icon="step-forward", tooltip="Next transition"
        )
        self.refresh_button = (
            widgets.Button(description="Refresh", icon="refresh") if self.live else None
        )
        self.summary = widgets.HTML()
        self.diagram = widgets.HTML()
        controls = [self.dropdown, self.previous_button, self.slider, self.next_button]
        if self.refresh_button is not None:
            controls.append(self.refresh_button)
        self.widget = widgets.VBox([widgets.HBox(controls), self.summary, self.diagram])

        self._updating = False
        self._select(first, at_end=True)
        self.dropdown.observe(self._on_machine, names="value")
        self.slider.observe(self._on_position, names="value")
        self.previous_button.on_click(lambda _button: self.step(-1))
        self.next_button.on_click(lambda _button: self.step(1))
        if self.refresh_button is not None:
            self.refresh_button.on_click(lambda _button: self.refresh())

    # State

    @property
    def machine_id(self) -> str | None:
        """The selected machine's id, None while the source has no machines."""
        return self.dropdown.value

    @property
    def position(self) -> int:
        """The selected position: 0 before the first transition, n after the n-th."""
        return int(self.slider.value)

    @property
    def machine(self) -> MachineDump | None:
        """The selected machine's schema and kept transitions."""
        mach_id = self.machine_id
        return None if mach_id is None else self._machines[mach_id]

    @property
    def record(self) -> TxRecord | None:
        """The transition at the selected position, None at position 0."""
        machine = self.machine
        if machine is None or self.position == 0:
            return None
        return machine.records[self.position - 1]

    # Actions

    def show(self, position: int) -> None:
        """Select `position`, clamped to the selected machine's transitions."""
        self.slider.value = max(self.slider.min, min(self.slider.max, position))

    def step(self, delta: int) -> None:
        """Move `delta` transitions forward (negative: back)."""
        self.show(self.position + delta)

    def select(self, machine_id: str) -> None:
        """Select the machine `machine_id`, at its last transition.

        Raises:
            KeyError: the source has no such machine.
        """
        if machine_id not in self._machines:
            known = ", ".join(self._machines) or "none"
            raise KeyError(
                f"no machine {machine_id!r} in the source; machines: {known}"
            )
        self.dropdown.value = machine_id

    def refresh(self) -> None:
        """Read the source again; a position at the last transition follows it."""
        at_end = self.position == self.slider.max
        self._read_source()
        mach_id = self.machine_id
        if mach_id not in self._machines:
            mach_id = next(iter(self._machines), None)
        self._updating = True
        try:
            self.dropdown.options = list(self._machines)
            self.dropdown.value = mach_id
        finally:
            self._updating = False
        self._select(mach_id, at_end=at_end)

    # Output

    def svg(self) -> str:
        """Return the SVG diagram of the selected machine at the selected position.

        The text starts at the ``<svg`` tag: pages that embed it reject an XML
        prolog.

        Raises:
            asyncmachine.vis.DotNotFoundError: graphviz's dot is missing.
        """
        machine = self.machine
        if machine is None:
            return ""
        position = self.position
        record = self.record
        key = (machine.schema.id, record.id if record is not None else "")
        svg = self._svg_cache.get(key)
        if svg is None:
            svg = _render(machine, position)
            self._svg_cache[key] = svg
            if len(self._svg_cache) > _SVG_CACHE_SIZE:
                self._svg_cache.popitem(last=False)
        else:
            self._svg_cache.move_to_end(key)
        return svg

    def summary_text(self) -> str:
        """Return the summary of the selected transition as plain text."""
        machine = self.machine
        if machine is None:
            return "no machines in the source yet"
        return transition_summary(machine, self.position)

    def _repr_mimebundle_(
        self, include: Any = None, exclude: Any = None
    ) -> dict[str, Any]:
        bundle = dict(self.widget._repr_mimebundle_(include=include, exclude=exclude))
        bundle["text/plain"] = self.summary_text()
        if self.machine is not None:
            with contextlib.suppress(Exception):
                bundle["image/svg+xml"] = self.svg()
        return bundle

    def __repr__(self) -> str:
        return f"<Inspector {self.machine_id} at {self.position}>"

    # Internals

    def _read_source(self) -> None:
        self._machines = {machine.schema.id: machine for machine in self._load()}

    def _select(self, mach_id: str | None, *, at_end: bool) -> None:
        """Point the slider at `mach_id`'s transitions and draw."""
        count = len(self._machines[mach_id].records) if mach_id is not None else 0
        self._updating = True
        try:
            position = count if at_end else min(self.position, count)
            # Lowering max clamps the value, which the flag keeps from drawing.
            self.slider.max = count
            self.slider.value = position
        finally:
            self._updating = False
        self._draw()

    def _on_machine(self, change: dict[str, Any]) -> None:
        if not self._updating:
            self._select(change["new"], at_end=True)

    def _on_position(self, change: dict[str, Any]) -> None:
        if not self._updating:
            self._draw()

    def _draw(self) -> None:
        self.summary.value = f"<pre>{html.escape(self.summary_text())}</pre>"
        if self.machine is None:
            self.diagram.value = ""
            return
        try:
            self.diagram.value = self.svg()
        except Exception as err:
            # Most often graphviz's dot is missing, and the message explains
            # how to install it.
            self.diagram.value = f"<pre>{html.escape(str(err))}</pre>"


def transition_summary(machine: MachineDump, position: int) -> str:
    """Return a text summary of `machine` after its `position`-th transition.

    Lists the called states, the result, the activated and deactivated states
    and the active states with their ticks before and after. Position 0
    describes the schema record's clock.

    Raises:
        IndexError: `position` is not between 0 and the number of transitions.
    """
    schema = machine.schema
    records = machine.records
    if not 0 <= position <= len(records):
        raise IndexError(
            f"machine {schema.id!r} has {len(records)} transitions, not {position}"
        )
    if position == 0:
        return (
            f"{schema.id}: before the first transition ({len(records)} kept)\n"
            f"active: {clock_text(schema.states, schema.clock)}"
        )
    record = records[position - 1]
    states = schema.states
    flags = [name for name in ("auto", "check", "sync") if getattr(record, name)]
    result = {0: "executed", 1: "canceled"}.get(
        record.result, f"queued {record.result}"
    )
    lines = [
        f"{schema.id}: transition {position} of {len(records)}, id {record.id} "
        f"at {_time_text(record.time)}",
        f"{record.type} {' '.join(record.called) or '(none)'} -> {result}"
        + (f" ({', '.join(flags)})" if flags else ""),
        "activated: " + _names(record, states, TxRecord.activated),
        "deactivated: " + _names(record, states, TxRecord.deactivated),
        f"before: {clock_text(states, record.clock_before)}",
        f"after: {clock_text(states, record.clock_after)}",
    ]
    if record.source is not None:
        source = record.source
        lines.append(f"source: {source.mach_id} {source.tx_id} {source.mach_time}")
    if record.args:
        lines.append(f"args: {', '.join(record.args)}")
    if record.log:
        lines.append("log:")
        lines.extend(f"  {line}" for line in record.log)
    return "\n".join(lines)


def clock_text(states: tuple[str, ...], clock: tuple[int, ...]) -> str:
    """Return the active states with their ticks, as ``(Start:1 Ready:3)``."""
    active = [
        f"{name}:{tick}" for name, tick in zip(states, clock, strict=False) if tick % 2
    ]
    return f"({' '.join(active)})"


def _names(
    record: TxRecord, states: tuple[str, ...], test: Callable[[TxRecord, int], bool]
) -> str:
    names = [name for index, name in enumerate(states) if test(record, index)]
    return " ".join(names) or "-"


def _time_text(timestamp: float) -> str:
    moment = datetime.datetime.fromtimestamp(timestamp, datetime.UTC)
    return moment.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3] + " UTC"


def _render(machine: MachineDump, position: int) -> str:
    """Rebuild `machine` at `position` and return its SVG diagram."""
    from .. import vis
    from ..vis_cli import build_machine

    with _rebuilding(machine.schema.id):
        mach = build_machine(machine, str(position))
    try:
        svg = vis.to_svg(vis.machine_graph(mach))
    finally:
        mach.dispose()
    return svg[svg.find("<svg") :] if "<svg" in svg else svg


@contextlib.contextmanager
def _rebuilding(mach_id: str) -> Iterator[None]:
    """Build a throwaway machine without side effects on live machines.

    A new machine reads the telemetry and REPL variables, and it takes its id's
    place in the process's machine registry. Both would make the rebuilt copy
    replace a live machine of the same id.
    """
    # NOTE: the variables are unset for the whole process while the machine is
    # built, so a machine created in another thread at that moment misses
    # them. A Machine option that skips the hooks would avoid this.
    saved_env = {
        name: os.environ.pop(name) for name in _ENV_HOOKS if name in os.environ
    }
    live = _machine._registry.get(mach_id)
    try:
        yield
    finally:
        os.environ.update(saved_env)
        if live is not None:
            _machine._registry[mach_id] = live


def _loader(source: Any) -> tuple[Callable[[], list[MachineDump]], bool]:
    """Return a function that reads `source`, and whether it changes over time."""
    if isinstance(source, Collector):
        return source.to_dump, True
    if isinstance(source, (str, os.PathLike)):
        dump = read_dump(source)
        return lambda: list(dump.machines), False
    if isinstance(source, Dump):
        return lambda: list(source.machines), False
    if isinstance(source, MachineDump):
        return lambda: [source], False
    if isinstance(source, History):
        return lambda: [_history_dump(source)], True
    if isinstance(source, (list, tuple)) and all(
        isinstance(item, (History, MachineDump)) for item in source
    ):
        items = list(source)
        return lambda: [
            _history_dump(item) if isinstance(item, History) else item for item in items
        ], True
    raise TypeError(
        f"the inspector's source must be a Collector, a dump file path, a Dump, "
        f"a MachineDump, a history or a list of histories, got "
        f"{type(source).__name__}"
    )


def _history_dump(hist: History) -> MachineDump:
    return MachineDump(hist.schema, hist.records())


def _import_widgets() -> Any:
    try:
        import ipywidgets
    except ImportError as err:
        raise ImportError(
            "the notebook inspector needs the ipywidgets package; install it "
            "with: pip install ipywidgets"
        ) from err
    return ipywidgets
