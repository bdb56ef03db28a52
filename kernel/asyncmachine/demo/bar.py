"""Handlers of ``browser-bar-<id>``: submit messages and watch foo.

In this in-process version the bar handlers mutate the ``server-foo`` machine
directly, where the distributed version mutates a mirror of it.
"""

from __future__ import annotations

import logging

import asyncmachine as am

from .foo import is_message
from .transcript import Transcript

log = logging.getLogger("asyncmachine.demo")


class BarHandlers:
    """Handlers of a ``browser-bar-<id>`` machine.

    Args:
        machine: the bar machine these handlers are bound to.
        server: the ``server-foo`` machine that receives the messages.
        transcript: where printed lines go.
    """

    def __init__(
        self, machine: am.Machine, server: am.Machine, transcript: Transcript
    ) -> None:
        self.machine = machine
        self.server = server
        self.transcript = transcript

    def SubmitMsgEnter(self, e: am.Event) -> bool:
        return is_message(e)

    def MsgEnter(self, e: am.Event) -> bool:
        return is_message(e)

    def SubmitMsgState(self, e: am.Event) -> None:
        args = {"msg": e.args["msg"], "author": e.mach_id}
        # Queued: this handler runs inside bar's own transition.
        self.machine.add("Msg", args=dict(args), event=e)
        result = self.server.add("Msg", args=args, event=e)
        if result.canceled:
            error = RuntimeError(f"{self.server.id} canceled Msg from {e.mach_id}")
            self.machine.add_err_state("ErrNetwork", error, event=e)

    def ExceptionState(self, e: am.Event) -> None:
        log.error("%s: error: %r", self.machine.id, self.machine.err())


class ServerWatcher:
    """Handlers bound to ``server-foo`` on behalf of a bar page.

    They print "foo is bored" when foo becomes ``Bored``.

    Args:
        page_id: the id of the bar machine that watches.
        transcript: where printed lines go.
    """

    def __init__(self, page_id: str, transcript: Transcript) -> None:
        self.page_id = page_id
        self.transcript = transcript

    def BoredState(self, e: am.Event) -> None:
        self.transcript.say(self.page_id, "foo is bored")
