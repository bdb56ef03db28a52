"""A blocking mirror for plain scripts without asyncio (CPython only).

:class:`BlockingMirror` runs an asyncio loop in a background thread and keeps a
:class:`~asyncmachine.rpc.Mirror` on it. Every method hands its work to that
loop and blocks the calling thread until it is done, so a script reads and
mutates a remote machine without ``async``. Pyodide has no threads: use the
awaitable :func:`~asyncmachine.rpc.connect_mirror` there.

Usage::

    with BlockingMirror("127.0.0.1:7001", id="script") as foo:
        foo.add("Msg", {"msg": "hi"})    # the source's Result
        foo.when("Bored", timeout=30)
        print(foo.string_all())
"""

from __future__ import annotations

import asyncio
import logging
import sys
import threading
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any, TypeVar

import asyncmachine as am

from ._mirror import Mirror, connect_mirror

__all__ = ["BlockingMirror"]

logger = logging.getLogger("asyncmachine.rpc")

_T = TypeVar("_T")


class BlockingMirror:
    """A mirror whose methods block; its loop runs in a background thread.

    Args:
        target: ``host:port`` or a ``ws://`` URL of the source.
        timeout: Seconds to wait for the connection and the first sync, or
            None to wait as long as the retries take.
        **options: Keyword arguments of :func:`~asyncmachine.rpc.connect_mirror`
            (``id`` is required).

    Raises:
        RuntimeError: In Pyodide, which cannot start threads.
        TimeoutError: The mirror did not sync within `timeout`.
        Exception: What :func:`~asyncmachine.rpc.connect_mirror` raises.
    """

    def __init__(
        self, target: str, *, timeout: float | None = 30.0, **options: Any
    ) -> None:
        if sys.platform == "emscripten":
            raise RuntimeError(
                "BlockingMirror needs a thread, which Pyodide cannot start; "
                "use 'await connect_mirror(...)' instead"
            )
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever,
            name=f"am-mirror-{options.get('id', '?')}",
            daemon=True,
        )
        self._thread.start()
        try:
            self.mirror: Mirror = self._run(connect_mirror(target, **options), timeout)
        except BaseException:
            self._stop_loop()
            raise

    # -- running on the loop --------------------------------------------------------

    def _run(self, coro: Awaitable[_T], timeout: float | None = None) -> _T:
        if threading.current_thread() is self._thread:
            raise RuntimeError(
                "a BlockingMirror method was called from its own loop, e.g. by a "
                "handler; use the awaitable mirror (.mirror) there"
            )
        future = asyncio.run_coroutine_threadsafe(_as_coroutine(coro), self._loop)
        try:
            return future.result(timeout)
        except TimeoutError:
            future.cancel()
            raise

    def _read(self, fn: Callable[..., _T], *args: Any) -> _T:
        """Run a read of the mirror on its loop, between two transitions."""

        async def read() -> _T:
            return fn(*args)

        return self._run(read())

    # -- mutations ----------------------------------------------------------------

    def add(
        self, states: str | Iterable[str], args: Mapping[str, Any] | None = None
    ) -> am.Result:
        """Add states on the source; return its result."""
        return self._run(self._mutate("add", states, args))

    def remove(
        self, states: str | Iterable[str], args: Mapping[str, Any] | None = None
    ) -> am.Result:
        """Remove states on the source; return its result."""
        return self._run(self._mutate("remove", states, args))

    def set(
        self, states: str | Iterable[str], args: Mapping[str, Any] | None = None
    ) -> am.Result:
        """Set states on the source; return its result."""
        return self._run(self._mutate("set", states, args))

    def add_err(self, err: BaseException) -> am.Result:
        """Add ``Exception`` with `err` on the source; return its result."""

        async def send() -> am.Result:
            return await self.mirror.add_err(err)

        return self._run(send())

    async def _mutate(self, kind: str, states: Any, args: Any) -> am.Result:
        method = getattr(self.mirror, kind)
        return await method(states, args)

    # -- reads and waits ------------------------------------------------------------

    def is_active(self, *states: str) -> bool:
        """Return whether all `states` are active."""
        return self._read(self.mirror.is_active, *states)

    def active_states(self) -> list[str]:
        """Return the active states in state order."""
        return self._read(self.mirror.active_states)

    def tick(self, state: str) -> int:
        """Return the tick of `state`."""
        return self._read(self.mirror.tick, state)

    def clock(self) -> dict[str, int]:
        """Return every state's tick by name."""
        return self._read(self.mirror.clock)

    def time(self) -> list[int]:
        """Return the ticks in state order."""
        return self._read(self.mirror.time)

    def state_names(self) -> tuple[str, ...]:
        """Return every state name in state order."""
        return self._read(self.mirror.state_names)

    def string_all(self) -> str:
        """Return active states, then inactive ones, with ticks."""
        return self._read(self.mirror.string_all)

    def inspect(self) -> str:
        """Return every state with its tick and relations."""
        return self._read(self.mirror.inspect)

    def __str__(self) -> str:
        return self._read(str, self.mirror)

    def when(self, states: str | Iterable[str], timeout: float | None = None) -> None:
        """Block until all `states` are active at once.

        Raises:
            TimeoutError: They were not within `timeout` seconds.
        """
        self._run(self._wait(lambda: self.mirror.when(states)), timeout)

    def when_not(
        self, states: str | Iterable[str], timeout: float | None = None
    ) -> None:
        """Block until all `states` are inactive at once.

        Raises:
            TimeoutError: They were not within `timeout` seconds.
        """
        self._run(self._wait(lambda: self.mirror.when_not(states)), timeout)

    @staticmethod
    async def _wait(make_waiter: Callable[[], am.Waiter]) -> None:
        await make_waiter()

    # -- closing ---------------------------------------------------------------------

    def close(self) -> None:
        """Say bye to the source, close the connection and stop the thread."""
        if not self._thread.is_alive():
            return
        try:
            self._run(self.mirror.close(), timeout=10)
        except Exception as err:
            logger.warning("mirror %s: close failed: %r", self.mirror.id, err)
        self._stop_loop()

    def _stop_loop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        if not self._thread.is_alive():
            self._loop.close()

    def __enter__(self) -> BlockingMirror:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<BlockingMirror {self.mirror.id}>"


async def _as_coroutine(awaitable: Awaitable[_T]) -> _T:
    return await awaitable
