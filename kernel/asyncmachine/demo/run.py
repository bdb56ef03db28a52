"""The in-process foo/bar scenario: both machines in one asyncio loop.

Flow: a scripted user submits messages in ``browser-bar-<id>``. Each one
becomes ``Msg`` in bar and in ``server-foo``, which prints it. foo sends
"hello" to bar every ``hello_every`` seconds until bar's ``Msg`` tick reaches
``hello_limit``. After ``bored_after`` seconds without a message foo becomes
``Bored``, and bar prints "foo is bored". The run ends when foo is bored after
the user and the hellos are done.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import string
from collections.abc import Awaitable
from dataclasses import dataclass, field
from typing import TextIO

import asyncmachine as am

from .bar import BarHandlers, ServerWatcher
from .foo import FooHandlers
from .states import BAR_SCHEMA, FOO_SCHEMA
from .transcript import Transcript, TranscriptTracer

log = logging.getLogger("asyncmachine.demo")

SERVER_ID = "server-foo"
PAGE_ID_ALPHABET = string.ascii_lowercase + string.digits
PAGE_ID_LENGTH = 6

DEFAULT_MESSAGES = ("hi foo", "how are you?", "see you later")


@dataclass(frozen=True)
class DemoConfig:
    """Timings and input of one demo run. Times are in seconds."""

    hello_every: float = 0.5
    hello_limit: int = 8
    bored_after: float = 1.5
    user_delay: float = 0.3
    messages: tuple[str, ...] = DEFAULT_MESSAGES
    # None: computed by ``time_limit``.
    timeout: float | None = None

    def time_limit(self) -> float:
        """Return ``timeout``, or an estimate of the run's length times 4 plus 10 s.

        The estimate allows for ``hello_limit // 2 + 1`` hellos, the most that
        can be sent before bar's ``Msg`` tick reaches the limit.
        """
        if self.timeout is not None:
            return self.timeout
        expected = (
            len(self.messages) * self.user_delay
            + (self.hello_limit // 2 + 1) * self.hello_every
            + self.bored_after
        )
        return 4 * expected + 10.0


@dataclass
class DemoResult:
    """The outcome of a run: ids, what happened and the final clocks."""

    server_id: str
    page_id: str
    transcript: list[str]
    hellos: int = 0
    # What went wrong, or None after a run that finished as planned.
    error: str | None = None
    final_states: dict[str, str] = field(default_factory=dict)


def new_page_id() -> str:
    """Return ``browser-bar-`` plus 6 random lowercase letters and digits."""
    suffix = "".join(secrets.choice(PAGE_ID_ALPHABET) for _ in range(PAGE_ID_LENGTH))
    return f"browser-bar-{suffix}"


async def submit_messages(
    page: am.Machine, messages: tuple[str, ...], delay: float
) -> None:
    """Play the user: submit each message in ``page``, ``delay`` seconds apart."""
    for text in messages:
        await asyncio.sleep(delay)
        result = page.add("SubmitMsg", args={"msg": text})
        if result.canceled:
            log.warning("%s: SubmitMsg %r was canceled", page.id, text)


async def run_demo(config: DemoConfig, output: TextIO | None = None) -> DemoResult:
    """Run the scenario once and return its result.

    Args:
        config: timings and messages.
        output: the stream for the machines' printed lines; None for standard
            output.

    Returns:
        The result; its ``error`` names a machine error or a timeout.
    """
    transcript = Transcript(output)
    server = am.Machine(FOO_SCHEMA, id=SERVER_ID)
    page = am.Machine(BAR_SCHEMA, id=new_page_id())
    result = DemoResult(server.id, page.id, [])
    log.info("demo started: %s and %s", server.id, page.id)

    server.add_tracer(TranscriptTracer(transcript, server))
    page.add_tracer(TranscriptTracer(transcript, page))
    foo_handlers = FooHandlers(server, transcript, config.bored_after)
    server.bind_handlers(foo_handlers)
    page.bind_handlers(BarHandlers(page, server, transcript))
    server.bind_handlers(ServerWatcher(page.id, transcript))

    tasks: list[asyncio.Future] = []
    try:
        server.add("Start")
        page.add("Start")
        hellos = asyncio.create_task(
            foo_handlers.say_hello(page, config.hello_every, config.hello_limit)
        )
        user = asyncio.create_task(
            submit_messages(page, config.messages, config.user_delay)
        )
        finished = asyncio.create_task(_until_bored(server, user, hellos))
        errors = [
            asyncio.ensure_future(_wait(server.when_err())),
            asyncio.ensure_future(_wait(page.when_err())),
        ]
        tasks = [hellos, user, finished, *errors]

        done, _pending = await asyncio.wait(
            [finished, *errors],
            timeout=config.time_limit(),
            return_when=asyncio.FIRST_COMPLETED,
        )
        if finished in done:
            result.hellos = finished.result()
        elif done:
            failed = server if server.is_err() else page
            result.error = f"{failed.id} has an error: {failed.err()!r}"
        else:
            result.error = f"the demo did not finish within {config.time_limit():g} s"
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for machine in (server, page):
            result.final_states[machine.id] = machine.string_all()
            machine.dispose()
        result.transcript = transcript.lines()

    if result.error:
        log.error("demo failed: %s", result.error)
    else:
        log.info("demo finished: %s is bored, %d hellos", server.id, result.hellos)
    return result


async def _wait(awaitable: Awaitable[object]) -> None:
    await awaitable


async def _until_bored(
    server: am.Machine, user: asyncio.Task, hellos: asyncio.Task
) -> int:
    """Wait for the user and the hellos, then for ``Bored``.

    Returns the number of hellos sent. The last message removed ``Bored``, so
    the wait ends only after another ``bored_after`` seconds of quiet.
    """
    await user
    sent = await hellos
    await server.when("Bored")
    return sent
