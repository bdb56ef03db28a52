"""The output of a bar page: a status line, an input box, messages and a log.

:class:`WidgetView` shows them with ipywidgets in a notebook (the JupyterLite
page, or any Jupyter). :class:`RecordingView` keeps them in lists, for pages
run without a notebook, such as the tests' pages in CPython.

The widgets carry CSS classes that ``am-demo --headless`` reads in the page:
``am-status`` (its text contains "connected to server-foo" while connected),
``am-input``, ``am-messages`` (one ``am-message`` element per line),
``am-bored`` and ``am-log``.
"""

from __future__ import annotations

import asyncio
import html
import logging
from collections.abc import Callable
from typing import Any, Protocol

__all__ = ["PageView", "RecordingView", "ViewLogHandler", "WidgetView"]

# Lines kept by the message list and the log; older ones are dropped.
MAX_MESSAGES = 200
MAX_LOG_LINES = 300


class PageView(Protocol):
    """The page's output, as :class:`~asyncmachine.demo.page.BarPage` uses it."""

    def set_status(self, text: str, *, connected: bool) -> None:
        """Show the connection status."""

    def add_message(self, text: str) -> None:
        """Append a line to the message list."""

    def set_bored(self, bored: bool) -> None:
        """Show whether server-foo is bored."""

    def log(self, line: str) -> None:
        """Append a line to the log."""

    def on_submit(self, callback: Callable[[str], Any]) -> None:
        """Call `callback(text)` for each text the user submits."""


class RecordingView:
    """A view that keeps everything in lists; :meth:`wait_for` awaits changes."""

    def __init__(self) -> None:
        self.status = ""
        self.connected = False
        self.messages: list[str] = []
        self.bored = False
        self.log_lines: list[str] = []
        self._submit: Callable[[str], Any] | None = None
        self._changed: asyncio.Event | None = None

    def _notify(self) -> None:
        if self._changed is not None:
            self._changed.set()

    async def wait_for(self, predicate: Callable[[RecordingView], bool]) -> None:
        """Wait until `predicate(view)` is true, checking after each change."""
        if self._changed is None:
            self._changed = asyncio.Event()
        while not predicate(self):
            self._changed.clear()
            await self._changed.wait()

    def set_status(self, text: str, *, connected: bool) -> None:
        self.status = text
        self.connected = connected
        self._notify()

    def add_message(self, text: str) -> None:
        self.messages.append(text)
        self._notify()

    def set_bored(self, bored: bool) -> None:
        self.bored = bored
        self._notify()

    def log(self, line: str) -> None:
        self.log_lines.append(line)

    def on_submit(self, callback: Callable[[str], Any]) -> None:
        self._submit = callback

    def type_message(self, text: str) -> Any:
        """Submit `text` as a user typing it and pressing Enter would."""
        assert self._submit is not None, "the page has not attached to this view"
        return self._submit(text)


class WidgetView:
    """The page's widgets: status, input box, bored badge, messages and log."""

    def __init__(self) -> None:
        import ipywidgets as widgets

        self.status = widgets.HTML(value="starting")
        self.status.add_class("am-status")
        self.input = widgets.Text(
            placeholder="Message for server-foo; press Enter to send",
            continuous_update=False,
            layout=widgets.Layout(width="32em"),
        )
        self.input.add_class("am-input")
        self.bored = widgets.HTML(value="")
        self.bored.add_class("am-bored")
        self.messages = widgets.HTML(value="")
        self.messages.add_class("am-messages")
        self.log_area = widgets.Textarea(
            value="", disabled=True, layout=widgets.Layout(width="100%", height="12em")
        )
        self.log_area.add_class("am-log")
        log_box = widgets.Accordion(children=[self.log_area])
        log_box.set_title(0, "log")
        log_box.selected_index = None
        self.box = widgets.VBox(
            [self.status, self.input, self.bored, self.messages, log_box]
        )
        self._message_lines: list[str] = []
        self._log_lines: list[str] = []
        self._submit: Callable[[str], Any] | None = None
        # With continuous_update=False the value syncs on Enter (or when the
        # box loses focus), and an observer receives the whole text. on_submit
        # is deprecated in ipywidgets 8 and may receive an empty value.
        self.input.observe(self._on_value, names="value")

    def _ipython_display_(self) -> None:
        from IPython.display import display

        display(self.box)

    def _on_value(self, change: dict[str, Any]) -> None:
        text = change["new"]
        if not isinstance(text, str) or not text.strip():
            return
        # Clearing the box calls this observer again, with an empty text.
        self.input.value = ""
        if self._submit is not None:
            self._submit(text)

    def on_submit(self, callback: Callable[[str], Any]) -> None:
        self._submit = callback

    def set_status(self, text: str, *, connected: bool) -> None:
        color = "#1a7f37" if connected else "#9a6700"
        self.status.value = (
            f'<span style="color: {color}; font-weight: bold">'
            f"{html.escape(text)}</span>"
        )

    def add_message(self, text: str) -> None:
        self._message_lines.append(
            f'<div class="am-message"><code>{html.escape(text)}</code></div>'
        )
        del self._message_lines[:-MAX_MESSAGES]
        self.messages.value = "".join(self._message_lines)

    def set_bored(self, bored: bool) -> None:
        self.bored.value = "<b>foo is bored</b>" if bored else ""

    def log(self, line: str) -> None:
        self._log_lines.append(line)
        del self._log_lines[:-MAX_LOG_LINES]
        self.log_area.value = "\n".join(self._log_lines)


class ViewLogHandler(logging.Handler):
    """Writes log records to a view's log instead of the cell's stderr."""

    def __init__(self, view: PageView, level: int = logging.INFO) -> None:
        super().__init__(level)
        self.view = view
        self.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.view.log(self.format(record))
        except Exception:
            self.handleError(record)
