"""Live diagrams in the JupyterLite page: Graphviz compiled to WebAssembly.

The browser kernel has no ``dot`` program, so :class:`LiveSvg` renders with
``lite_graphviz`` (shipped in the offline site) and updates a display output in
place, at most once per ``min_interval`` seconds, after the machine's
transitions. Only the awaitable API is used, so it works without JSPI.

Usage in a cell::

    from asyncmachine.demo.live_svg import LiveSvg

    diagram = await LiveSvg(bar).show()
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import asyncmachine as am

__all__ = ["LiveSvg"]

log = logging.getLogger("asyncmachine.demo")


class _Tracer(am.Tracer):
    def __init__(self, diagram: LiveSvg) -> None:
        self.diagram = diagram

    def transition_end(self, tx: Any, result: Any = None) -> None:
        if tx.accepted:
            self.diagram.request_update()

    def machine_dispose(self, mach_id: str) -> None:
        self.diagram.stop()


class LiveSvg:
    """A machine's diagram in a display output, updated after transitions.

    Args:
        mach: The machine to draw.
        handle: The display handle to update; None makes a new output on
            :meth:`show`.
        min_interval: Seconds between two renders.
    """

    def __init__(
        self, mach: am.Machine, handle: Any = None, *, min_interval: float = 0.25
    ) -> None:
        self.mach = mach
        self.handle = handle
        self.min_interval = min_interval
        self.renders = 0
        self._tracer = _Tracer(self)
        self._pending = False
        self._task: asyncio.Task[None] | None = None
        self._stopped = False

    async def show(self) -> LiveSvg:
        """Render now, display (or update the given handle) and follow changes."""
        from IPython.display import display

        svg = await self._render()
        if self.handle is None:
            self.handle = display(_svg(svg), display_id=True)
        else:
            self.handle.update(_svg(svg))
        self.mach.add_tracer(self._tracer)
        return self

    def request_update(self) -> None:
        """Schedule a render; later requests merge until it runs."""
        if self._stopped:
            return
        self._pending = True
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._update_loop())

    def stop(self) -> None:
        """Stop following the machine; the output keeps the last diagram."""
        self._stopped = True
        if self._tracer in self.mach.tracers():
            self.mach.remove_tracer(self._tracer)

    async def _update_loop(self) -> None:
        while self._pending and not self._stopped:
            self._pending = False
            try:
                svg = await self._render()
            except Exception as err:
                log.warning("diagram of %s not rendered: %r", self.mach.id, err)
                return
            if self.handle is not None:
                self.handle.update(_svg(svg))
            await asyncio.sleep(self.min_interval)

    async def _render(self) -> str:
        import lite_graphviz

        from asyncmachine import vis

        svg = await lite_graphviz.render_svg(vis.machine_graph(self.mach))
        self.renders += 1
        return svg


def _svg(text: str) -> Any:
    from IPython.display import SVG

    return SVG(data=text)
