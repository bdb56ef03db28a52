"""Handlers of ``server-foo``: print messages, send hellos to pages, get bored."""

from __future__ import annotations

import asyncio
import logging

import asyncmachine as am

from .transcript import Transcript

log = logging.getLogger("asyncmachine.demo")

UNKNOWN_AUTHOR = "unknown"
"""Author shown for a message whose mutation has no source and no author arg."""


def message_author(e: am.Event) -> str:
    """Return who wrote a ``Msg``: the machine id of the mutation's source.

    A mutation sent with ``event=e`` carries its source machine, also across
    the network. Mutations without one, such as a machine's own timer or a
    REPL command, may name the author in the ``author`` arg.
    """
    source = e.transition.mutation.source
    if source is not None and source.mach_id:
        return source.mach_id
    author = e.args.get("author")
    if isinstance(author, str) and author:
        return author
    return UNKNOWN_AUTHOR


def is_message(e: am.Event) -> bool:
    """Return whether the event's args hold a non-empty ``msg`` string."""
    text = e.args.get("msg")
    return isinstance(text, str) and bool(text.strip())


class FooHandlers:
    """Handlers of ``server-foo``.

    Args:
        machine: the ``server-foo`` machine these handlers are bound to.
        transcript: where printed lines go.
        bored_after: seconds without a message before foo becomes ``Bored``.
    """

    def __init__(
        self, machine: am.Machine, transcript: Transcript, bored_after: float
    ) -> None:
        self.machine = machine
        self.transcript = transcript
        self.bored_after = bored_after

    def ReadyState(self, e: am.Event) -> None:
        self._start_bored_timer(self.machine.state_ctx("Ready"))

    def MsgEnter(self, e: am.Event) -> bool:
        return is_message(e)

    def MsgState(self, e: am.Event) -> None:
        self.transcript.say(self.machine.id, f"[{message_author(e)}] {e.args['msg']}")
        # The next message ends this context, and with it this timer.
        self._start_bored_timer(self.machine.state_ctx("Msg"))

    def ExceptionState(self, e: am.Event) -> None:
        log.error("%s: error: %r", self.machine.id, self.machine.err())

    def _start_bored_timer(self, ctx: am.StateContext) -> None:
        self.machine.fork(ctx, self._become_bored(self.machine.tick("Msg")))

    async def _become_bored(self, msg_tick: int) -> None:
        await asyncio.sleep(self.bored_after)
        # The timer from ReadyState outlives new messages, so it checks that no
        # message arrived since it started.
        if self.machine.tick("Msg") == msg_tick:
            self.machine.add("Bored")

    async def say_hello(self, page: am.Machine, every: float, limit: int) -> int:
        """Add ``Msg`` "hello" to ``page`` and to foo every ``every`` seconds.

        Stops once the page's ``Msg`` tick reaches ``limit``. ``Msg`` is Multi,
        so its tick grows by 2 with each message while it stays active. Also
        stops when foo is no longer ``Ready``.

        Returns:
            The number of hellos sent.
        """
        sent = 0
        while True:
            await asyncio.sleep(every)
            if page.tick("Msg") >= limit or not self.machine.is_active("Ready"):
                return sent
            args = {"msg": "hello", "author": self.machine.id}
            result = page.add("Msg", args=dict(args))
            if result.canceled:
                log.warning("%s: hello to %s was canceled", self.machine.id, page.id)
            self.machine.add("Msg", args=args)
            sent += 1
