"""The full-screen terminal UI of am-dbg, built on prompt_toolkit.

Panes: machines (left), states with ticks at the selected transition, the
transition list, and the selected transition's details and log (bottom). ``?``
shows every key.

Usage::

    view = DebuggerView(collector)
    app = build_app(view)
    await app.run_async()
"""

from __future__ import annotations

import asyncio
from typing import Any

from prompt_toolkit.application import Application
from prompt_toolkit.buffer import Buffer
from prompt_toolkit.data_structures import Point
from prompt_toolkit.filters import Condition
from prompt_toolkit.key_binding import KeyBindings, KeyPressEvent
from prompt_toolkit.layout import (
    ConditionalContainer,
    HSplit,
    Layout,
    VSplit,
    Window,
)
from prompt_toolkit.layout.controls import BufferControl, FormattedTextControl
from prompt_toolkit.styles import Style

from ._view import DebuggerView

__all__ = ["build_app", "run_tui"]

STYLE = Style.from_dict(
    {
        "title": "reverse bold",
        "status": "reverse",
        "selected": "bold underline",
        "active": "ansiyellow bold",
        "error": "ansired bold",
        "canceled": "ansibrightblack",
        "dim": "ansibrightblack",
        "prompt": "bold",
    }
)


def _bindings(view: DebuggerView, prompt: Buffer) -> KeyBindings:
    keys = KeyBindings()
    browsing = Condition(lambda: view.prompt is None)
    prompting = Condition(lambda: view.prompt is not None)

    def on(*names: str) -> Any:
        return keys.add(*names, filter=browsing)

    @on("q")
    @keys.add("c-c")
    def _quit(event: KeyPressEvent) -> None:
        event.app.exit()

    @on("up")
    @on("k")
    def _up(event: KeyPressEvent) -> None:
        view.select_machine(-1)

    @on("down")
    @on("j")
    def _down(event: KeyPressEvent) -> None:
        view.select_machine(1)

    @on("left")
    @on("h")
    def _back(event: KeyPressEvent) -> None:
        view.step(-1)

    @on("right")
    @on("l")
    def _forward(event: KeyPressEvent) -> None:
        view.step(1)

    @on("pageup")
    def _back_100(event: KeyPressEvent) -> None:
        view.step(-100)

    @on("pagedown")
    def _forward_100(event: KeyPressEvent) -> None:
        view.step(100)

    @on("home")
    def _first(event: KeyPressEvent) -> None:
        view.first()

    @on("end")
    def _last(event: KeyPressEvent) -> None:
        view.last()

    @on("[")
    def _global_back(event: KeyPressEvent) -> None:
        view.step_global(-1)

    @on("]")
    def _global_forward(event: KeyPressEvent) -> None:
        view.step_global(1)

    @on("t")
    def _tail(event: KeyPressEvent) -> None:
        view.toggle_tail()

    @on("c")
    def _canceled(event: KeyPressEvent) -> None:
        view.hide_canceled = not view.hide_canceled

    @on("a")
    def _auto(event: KeyPressEvent) -> None:
        view.hide_auto = not view.hide_auto

    @on("e")
    def _empty(event: KeyPressEvent) -> None:
        view.hide_empty = not view.hide_empty

    @on("n")
    def _next_match(event: KeyPressEvent) -> None:
        view.find(forward=True)

    @on("N")
    def _previous_match(event: KeyPressEvent) -> None:
        view.find(forward=False)

    @on("s")
    def _next_state(event: KeyPressEvent) -> None:
        view.select_state(1)

    @on("S")
    def _previous_state(event: KeyPressEvent) -> None:
        view.select_state(-1)

    @on(">")
    def _next_touching(event: KeyPressEvent) -> None:
        view.jump_touching(forward=True)

    @on("<")
    def _previous_touching(event: KeyPressEvent) -> None:
        view.jump_touching(forward=False)

    @on("?")
    def _help(event: KeyPressEvent) -> None:
        view.show_help = not view.show_help

    def open_prompt(event: KeyPressEvent, purpose: str, text: str) -> None:
        view.prompt = purpose
        prompt.text = text
        prompt.cursor_position = len(text)
        event.app.layout.focus(prompt)

    @on("/")
    def _search(event: KeyPressEvent) -> None:
        open_prompt(event, "search", view.search)

    @on("x")
    def _export(event: KeyPressEvent) -> None:
        open_prompt(event, "export", view.dump_path)

    @on("i")
    def _import(event: KeyPressEvent) -> None:
        open_prompt(event, "import", view.dump_path)

    @keys.add("enter", filter=prompting)
    def _accept(event: KeyPressEvent) -> None:
        purpose, text = view.prompt, prompt.text.strip()
        view.prompt = None
        event.app.layout.focus_last()
        if purpose == "search":
            view.search = text
            if text:
                view.find(forward=True)
        elif purpose == "export" and text:
            view.export(text)
        elif purpose == "import" and text:
            view.import_(text)

    @keys.add("escape", filter=prompting)
    def _cancel(event: KeyPressEvent) -> None:
        view.prompt = None
        event.app.layout.focus_last()

    return keys


def build_app(view: DebuggerView, **app_args: Any) -> Application[None]:
    """Build the full-screen application for `view`.

    Args:
        view: the debugger state to show and change.
        app_args: passed to ``Application``, e.g. ``input`` and ``output`` in
            tests.
    """
    prompt = Buffer(multiline=False)

    def transitions_text() -> Any:
        fragments, _line = view.transition_lines()
        return fragments

    def transitions_cursor() -> Point:
        _fragments, line = view.transition_lines()
        return Point(x=0, y=line)

    def prompt_label() -> Any:
        return [("class:prompt", f" {view.prompt}: ")]

    transitions = Window(
        FormattedTextControl(transitions_text, get_cursor_position=transitions_cursor),
        wrap_lines=False,
    )
    body = HSplit(
        [
            Window(FormattedTextControl(view.render_title), height=1),
            VSplit(
                [
                    Window(FormattedTextControl(view.render_machines), width=30),
                    Window(width=1, char="|"),
                    Window(FormattedTextControl(view.render_states), width=30),
                    Window(width=1, char="|"),
                    transitions,
                ]
            ),
            Window(height=1, char="-"),
            Window(FormattedTextControl(view.render_details), height=12),
            ConditionalContainer(
                VSplit(
                    [
                        Window(
                            FormattedTextControl(prompt_label),
                            width=lambda: len(view.prompt or "") + 3,
                        ),
                        Window(BufferControl(prompt), height=1),
                    ]
                ),
                filter=Condition(lambda: view.prompt is not None),
            ),
            Window(FormattedTextControl(view.render_status), height=1),
        ]
    )
    app: Application[None] = Application(
        layout=Layout(body, focused_element=transitions),
        key_bindings=_bindings(view, prompt),
        style=STYLE,
        full_screen=True,
        min_redraw_interval=0.05,
        **app_args,
    )
    return app


async def run_tui(view: DebuggerView, stop: asyncio.Event | None = None) -> None:
    """Run the UI until the user quits or `stop` is set (e.g. by SIGTERM)."""
    app = build_app(view)

    def redraw(_collector: Any) -> None:
        app.invalidate()

    view.collector.add_listener(view.listener())
    view.collector.add_listener(redraw)
    watcher = None
    if stop is not None:

        async def exit_on_stop() -> None:
            await stop.wait()
            if app.is_running:
                app.exit()

        watcher = asyncio.ensure_future(exit_on_stop())
    try:
        await app.run_async()
    finally:
        if watcher is not None:
            watcher.cancel()
