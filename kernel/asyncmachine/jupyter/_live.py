"""Live diagrams: a displayed diagram that updates in place after transitions.

Usage in a notebook::

    from asyncmachine.jupyter import live

    view = live(mach)           # shows the diagram
    mach.add("Start")           # the same output updates shortly after
    view.stop()                 # detach; the output keeps the last diagram

A transition only schedules the update. The diagram is built on the asyncio
loop that was running when :func:`live` was called (the kernel's loop in
Jupyter), laid out by ``dot`` in a worker thread, and published with
``update_display``. Updates are coalesced to at most one per `min_interval`.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

from .._tracer import Tracer
from ..vis import DotNotFoundError, machine_graph, network_graph, to_svg
from ._display import ensure_recorder, machine_text, svg_body, warn_dot_missing

if TYPE_CHECKING:
    from IPython.display import DisplayHandle

    from .._machine import Machine
    from .._transition import Transition
    from ..vis import Link
    from ..vis._graphviz import graphviz

__all__ = ["LiveDiagram", "live"]

logger = logging.getLogger("asyncmachine.jupyter")


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


def _bundle(graph: graphviz.Digraph, text: str) -> dict[str, str]:
    """Render `graph` to a display bundle; text only when ``dot`` is missing."""
    try:
        svg = svg_body(to_svg(graph))
    except DotNotFoundError as err:
        warn_dot_missing(err)
        return {"text/plain": text}
    return {"image/svg+xml": svg, "text/plain": text}


class _ViewTracer(Tracer):
    """Requests an update of one view after accepted transitions."""

    def __init__(self, view: _View) -> None:
        self.view = view
        self.changed = False

    def transition_end(self, tx: Transition, result: Any) -> None:
        if tx.accepted and not tx.is_check:
            self.changed = True

    def queue_end(self, mach: Machine) -> None:
        if self.changed:
            self.changed = False
            self.view.request_update()

    def machine_dispose(self, mach_id: str) -> None:
        self.view.request_update()


class _View:
    """One displayed diagram of one or more machines, and its update schedule.

    Flags, guarded by `_lock`: `_pending` means an update was requested and
    has not started, `_rendering` that a render runs in a worker thread. Only
    one render runs at a time, so updates are published in order.
    """

    def __init__(
        self,
        machines: Sequence[Machine],
        build: Callable[[], graphviz.Digraph],
        min_interval: float,
        loop: asyncio.AbstractEventLoop | None,
    ) -> None:
        self.machines = list(machines)
        self.build = build
        self.min_interval = min_interval
        self.loop = loop
        self.handle: DisplayHandle | None = None
        self.updates = 0
        self.stopped = False
        self._lock = threading.Lock()
        self._pending = False
        self._rendering = False
        self._last_start = 0.0
        self.tracers = [_ViewTracer(self) for _ in self.machines]

    def text(self) -> str:
        return "\n".join(machine_text(mach) for mach in self.machines)

    def show(self) -> None:
        from IPython.display import display

        bundle = _bundle(self.build(), self.text())
        self.handle = display(bundle, raw=True, display_id=True)
        self._last_start = time.monotonic()
        for mach, tracer in zip(self.machines, self.tracers, strict=True):
            ensure_recorder(mach)
            mach.add_tracer(tracer)

    def detach(self) -> None:
        self.stopped = True
        for mach, tracer in zip(self.machines, self.tracers, strict=True):
            if tracer in mach.tracers():
                mach.remove_tracer(tracer)

    def request_update(self) -> None:
        """Schedule an update from any thread, waiting only for a short lock."""
        with self._lock:
            if self._pending or self.stopped:
                return
            self._pending = True
        loop = self.loop
        if loop is None or loop.is_closed():
            self._update_without_loop()
            return
        try:
            loop.call_soon_threadsafe(self._arm)
        except RuntimeError:
            # The loop closed between the check and the call.
            with self._lock:
                self._pending = False

    def _update_without_loop(self) -> None:
        # NOTE: without an asyncio loop there is nothing to run a delayed
        # update, so a change inside min_interval of the last update waits for
        # the next transition or refresh().
        now = time.monotonic()
        with self._lock:
            self._pending = False
            due = now - self._last_start >= self.min_interval
        if due:
            self.refresh()

    def _arm(self) -> None:
        """Start the render when min_interval has passed since the last one."""
        with self._lock:
            if self._rendering or self.stopped:
                return
        assert self.loop is not None
        delay = max(0.0, self._last_start + self.min_interval - time.monotonic())
        self.loop.call_later(delay, self._start_render)

    def _start_render(self) -> None:
        with self._lock:
            if self._rendering or self.stopped:
                return
            self._pending = False
            self._rendering = True
        self._last_start = time.monotonic()
        assert self.loop is not None
        # The graph is built here, in the loop's thread, so it reads the
        # machines between transitions. Only the dot layout runs in a thread.
        graph = self.build()
        text = self.text()
        future = self.loop.run_in_executor(None, _bundle, graph, text)
        future.add_done_callback(self._publish)

    def _publish(self, future: asyncio.Future[dict[str, str]]) -> None:
        try:
            bundle = future.result()
        except Exception:
            logger.exception(
                "live diagram of %s: rendering failed",
                ", ".join(mach.id for mach in self.machines),
            )
            bundle = None
        with self._lock:
            self._rendering = False
            again = self._pending and not self.stopped
        # After stop() the final refresh is the last update, so a render that
        # was in flight is dropped.
        if bundle is not None and self.handle is not None and not self.stopped:
            self.handle.update(bundle, raw=True)
            self.updates += 1
        if again:
            self._arm()

    def refresh(self) -> None:
        """Render now and update the display, in the calling thread."""
        self._last_start = time.monotonic()
        bundle = _bundle(self.build(), self.text())
        if self.handle is not None:
            self.handle.update(bundle, raw=True)
            self.updates += 1


class LiveDiagram:
    """Displayed diagrams of machines that update after their transitions.

    Create it with :func:`live`. With ``network=True`` all machines share one
    diagram (:func:`asyncmachine.vis.network_graph`). Otherwise each machine has
    its own output.
    """

    def __init__(
        self,
        machines: Iterable[Machine],
        *,
        network: bool = False,
        links: Iterable[Link | Sequence[str | None]] = (),
        min_interval: float = 0.1,
        loop: asyncio.AbstractEventLoop | None = None,
        **graph_options: Any,
    ) -> None:
        machine_list = list(machines)
        if not machine_list:
            raise ValueError("live() needs at least one machine")
        if min_interval < 0:
            raise ValueError(
                f"min_interval must be 0 or more seconds, got {min_interval}"
            )
        self.machines = machine_list
        self.min_interval = min_interval
        self.loop = loop if loop is not None else _running_loop()
        link_list = list(links)
        if network:

            def build_network() -> graphviz.Digraph:
                return network_graph(machine_list, link_list, **graph_options)

            self._views = [_View(machine_list, build_network, min_interval, self.loop)]
        else:
            if link_list:
                raise ValueError("links need network=True")
            self._views = [
                _View(
                    [mach],
                    functools.partial(machine_graph, mach, **graph_options),
                    min_interval,
                    self.loop,
                )
                for mach in machine_list
            ]

    @property
    def updates(self) -> int:
        """How many times the displayed diagrams were updated."""
        return sum(view.updates for view in self._views)

    @property
    def display_ids(self) -> list[str]:
        """The display ids of the outputs, one per diagram."""
        return [v.handle.display_id for v in self._views if v.handle is not None]

    def show(self) -> LiveDiagram:
        """Display the diagrams and start following the machines."""
        for view in self._views:
            view.show()
        return self

    def refresh(self) -> None:
        """Render and update every diagram now, in the calling thread."""
        for view in self._views:
            view.refresh()

    def stop(self) -> None:
        """Stop updating; the outputs show the machines as they are now."""
        for view in self._views:
            view.detach()
        for view in self._views:
            view.refresh()

    def _ipython_display_(self) -> None:
        # The diagrams were displayed by live() and update in place, so showing
        # this object again (as a cell's last value) adds nothing.
        return None

    def __repr__(self) -> str:
        ids = ", ".join(mach.id for mach in self.machines)
        return f"<LiveDiagram of {ids}, {self.updates} updates>"


def live(
    *machines: Machine,
    network: bool = False,
    links: Iterable[Link | Sequence[str | None]] = (),
    min_interval: float = 0.1,
    **graph_options: Any,
) -> LiveDiagram:
    """Display diagrams of `machines` that update in place after transitions.

    Call it in a notebook cell (or IPython). Mutations may come from any
    thread and from background asyncio tasks. Each of them schedules an update
    on the loop that runs the call, and bursts are coalesced to at most one
    update per `min_interval` seconds.

    Args:
        machines: the machines to follow.
        network: draw all machines in one network diagram, with `links`.
        links: links between machines, as for ``vis.network_graph``.
        min_interval: the minimum time between two updates of one diagram, in
            seconds.
        graph_options: options of ``vis.machine_graph`` (``states``,
            ``hide_exception``, ...) or of ``vis.network_graph``.

    Raises:
        RuntimeError: no IPython shell is running.
    """
    from IPython.core.interactiveshell import InteractiveShell

    if not InteractiveShell.initialized():
        raise RuntimeError(
            "live() displays through IPython; call it in a Jupyter notebook or "
            "an IPython shell"
        )
    diagram = LiveDiagram(
        machines,
        network=network,
        links=links,
        min_interval=min_interval,
        **graph_options,
    )
    return diagram.show()
