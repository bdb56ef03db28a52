"""Waiters and state contexts: awaitables resolved by a machine's transitions.

Waiters are plain objects until awaited, so they can be created and checked with
``done()`` from synchronous code. Awaiting one creates a future on the running
asyncio loop; a transition in another thread resolves it through that loop's
``call_soon_threadsafe``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Generator
from functools import partial
from typing import Any

__all__ = ["StateContext", "Waiter"]


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


def call_in_loop(loop: asyncio.AbstractEventLoop, fn: Callable[[], Any]) -> None:
    """Call `fn` now when `loop` runs in this thread, else schedule it on `loop`."""
    if _running_loop() is loop:
        fn()
    elif not loop.is_closed():
        loop.call_soon_threadsafe(fn)


def _finish(future: asyncio.Future[None], cancel: bool) -> None:
    if future.done():
        return
    if cancel:
        future.cancel()
    else:
        future.set_result(None)


class _Awaitable:
    """Shared part of waiters and contexts: resolution and awaiting."""

    __slots__ = ("_done", "_futures", "_callbacks")

    def __init__(self) -> None:
        self._done = False
        self._futures: list[asyncio.Future[None]] | None = None
        self._callbacks: list[Callable[[Any], Any]] | None = None

    def done(self) -> bool:
        """Return whether this was resolved (or cancelled)."""
        return self._done

    def add_done_callback(self, fn: Callable[[Any], Any]) -> None:
        """Call `fn(self)` on resolution, or now if already resolved.

        The callback runs in the thread that resolves, inside the transition.
        """
        if self._done:
            fn(self)
            return
        if self._callbacks is None:
            self._callbacks = []
        self._callbacks.append(fn)

    def remove_done_callback(self, fn: Callable[[Any], Any]) -> None:
        """Forget a callback added with :meth:`add_done_callback`."""
        if self._callbacks and fn in self._callbacks:
            self._callbacks.remove(fn)

    def _resolve(self, cancel: bool = False) -> None:
        if self._done:
            return
        self._done = True
        futures = self._futures
        if futures:
            self._futures = None
            for future in futures:
                call_in_loop(future.get_loop(), partial(_finish, future, cancel))
        callbacks = self._callbacks
        if callbacks:
            self._callbacks = None
            for fn in callbacks:
                fn(self)

    def __await__(self) -> Generator[Any, None, None]:
        if self._done:
            return
        future = asyncio.get_running_loop().create_future()
        if self._futures is None:
            self._futures = []
        self._futures.append(future)
        # A resolution in another thread may have run before the future was listed.
        if self._done:
            _finish(future, False)
        try:
            yield from future.__await__()
        finally:
            futures = self._futures
            if futures is not None and future in futures:
                futures.remove(future)


class Waiter(_Awaitable):
    """An awaitable resolved when a machine reaches some condition.

    Returned by the ``Machine.when*`` methods. ``await waiter`` returns None once the
    condition is true, and ``done()`` checks without waiting. ``cancel()``
    unregisters it and cancels every task awaiting it.
    """

    __slots__ = (
        "kind",
        "states",
        "values",
        "matched",
        "ctx",
        "key",
        "cancelled_flag",
        "_machine",
    )

    def __init__(
        self,
        machine: Any,
        kind: str,
        states: tuple[str, ...] = (),
        values: Any = None,
        ctx: Any = None,
    ) -> None:
        super().__init__()
        self._machine = machine
        self.kind = kind
        self.states = states
        self.values = values
        self.matched: set[str] = set()
        self.ctx = ctx
        self.key: Any = None
        self.cancelled_flag = False

    def cancelled(self) -> bool:
        """Return whether :meth:`cancel` was called before resolution."""
        return self.cancelled_flag

    def cancel(self) -> None:
        """Stop waiting: unregister and cancel every task awaiting this."""
        if self._done:
            return
        self.cancelled_flag = True
        machine = self._machine
        if machine is not None:
            machine._drop_waiter(self)
        self._resolve(cancel=True)

    def __repr__(self) -> str:
        state = "done" if self._done else "pending"
        what = " ".join(self.states)
        return f"<Waiter {self.kind} {what} {state}>"


class StateContext(_Awaitable):
    """A context bound to one state's tick; it ends when that tick changes.

    It ends when the state is next activated or deactivated (Multi re-entry
    included), and when the machine is disposed. ``await ctx.wait()`` returns when
    it ends.
    """

    __slots__ = ("mach_id", "state", "tick")

    def __init__(self, mach_id: str, state: str, tick: int) -> None:
        super().__init__()
        self.mach_id = mach_id
        self.state = state
        self.tick = tick

    async def wait(self) -> None:
        """Return when the context ends."""
        await self

    def __repr__(self) -> str:
        state = "done" if self._done else "valid"
        return f"<StateContext {self.mach_id} {self.state}@{self.tick} {state}>"
