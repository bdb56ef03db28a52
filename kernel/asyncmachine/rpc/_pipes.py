"""Pipes: one machine's state drives another machine's state.

A pipe is a pair of final handlers bound to the source machine: ``<State>State``
adds the target state and ``<State>End`` removes it. Either machine may be a
mirror, so a pipe can cross the network. A mirror as the source runs the pipe on
synced changes. A mirror as the target sends the mutation to its source without
waiting for the reply.

:func:`pipe` copies the current state first and binds the handlers in the same
synchronous step, so no transition of the source can fall between the two. A
local target is mutated inside the source's handler, and the target queues the
mutation when it is busy. The target may still reject it in its negotiation.

Usage::

    p = pipe(foo_mirror, "Bored", bar, "FooBored", mode="both")
    ...
    p.close()
"""

from __future__ import annotations

import logging
from typing import Any

import asyncmachine as am

from ._mirror import Mirror

__all__ = ["Pipe", "pipe"]

logger = logging.getLogger("asyncmachine.rpc")

_MODES = ("add", "remove", "both")


class Pipe:
    """A bound pipe; :meth:`close` unbinds it.

    Attributes:
        source: The machine whose state is read.
        state: The source state.
        target: The machine that is mutated.
        target_state: The target state.
        mode: ``"add"``, ``"remove"`` or ``"both"``.
    """

    def __init__(
        self,
        source: am.Machine,
        state: str,
        target: am.Machine,
        target_state: str,
        mode: str,
        forward_args: bool,
    ) -> None:
        self.source = source
        self.state = state
        self.target = target
        self.target_state = target_state
        self.mode = mode
        self.forward_args = forward_args
        self._group_id: str | None = None
        # An error state needs Exception, which it requires.
        self._added = (
            (target_state, am.EXCEPTION)
            if target_state.startswith("Err") and target.has(am.EXCEPTION)
            else (target_state,)
        )

    def __repr__(self) -> str:
        return (
            f"<Pipe {self.source.id}:{self.state} -> {self.target.id}:"
            f"{self.target_state} ({self.mode})>"
        )

    @property
    def closed(self) -> bool:
        """Whether the handlers are unbound."""
        return self._group_id is None

    def _bind(self) -> None:
        handlers: dict[str, Any] = {}
        if self.mode in ("add", "both"):
            handlers[f"{self.state}State"] = _handler(self._on_active)
        if self.mode in ("remove", "both"):
            handlers[f"{self.state}End"] = _handler(self._on_inactive)
        group = type(f"Pipe_{self.state}_to_{self.target_state}", (), handlers)()
        self._group_id = self.source.bind_handlers(group)
        self.source.on_dispose(self._on_dispose)
        self.target.on_dispose(self._on_dispose)
        for mach, line in (
            (self.source, f"[pipe-out:{self.mode}] {self.state} to {self.target.id}"),
            (
                self.target,
                f"[pipe-in:{self.mode}] {self.target_state} from {self.source.id}",
            ),
        ):
            if mach.log_level() >= am.LogLevel.OPS:
                mach._emit(am.LogLevel.OPS, "%s", (line,))

    def _copy(self) -> None:
        """Make the target state match the source state now."""
        active = self.source.is_active(self.state)
        if active and self.mode in ("add", "both"):
            if not self.target.is_active(self.target_state):
                self._mutate(self.target.add, None, None)
        elif not active and self.mode in ("remove", "both"):
            if self.target.is_active(self.target_state):
                self._mutate(self.target.remove, None, None)

    def _on_active(self, event: am.Event) -> None:
        args = dict(event.args) if self.forward_args and event.args else None
        self._mutate(self.target.add, args, event)

    def _on_inactive(self, event: am.Event) -> None:
        self._mutate(self.target.remove, None, event)

    def _mutate(self, method: Any, args: Any, event: am.Event | None) -> None:
        states = self._added if method == self.target.add else (self.target_state,)
        if not isinstance(self.target, Mirror):
            method(states, args, event=event)
            return
        try:
            future = method(states, args, event=event)
        except TypeError as err:
            # The source's args may hold values that cannot cross the network.
            logger.warning("%r: args not sent: %s", self, err)
            future = method(states, None, event=event)
        future.add_done_callback(self._log_failure)

    def _log_failure(self, future: Any) -> None:
        if future.cancelled():
            return
        err = future.exception()
        if err is not None:
            logger.warning("%r: mutating the target failed: %r", self, err)

    def _on_dispose(self, mach_id: str) -> None:
        if self._group_id is None:
            return
        logger.debug("%r: closed, machine %s disposed", self, mach_id)
        self.close()

    def close(self) -> None:
        """Unbind the pipe's handlers from the source."""
        group_id = self._group_id
        if group_id is None:
            return
        self._group_id = None
        if group_id in self.source.handlers():
            self.source.detach_handlers(group_id)


def _handler(fn: Any) -> Any:
    def handler(self: Any, event: am.Event) -> None:
        fn(event)

    return handler


def pipe(
    source: am.Machine,
    state: str,
    target: am.Machine,
    target_state: str | None = None,
    *,
    mode: str = "add",
    forward_args: bool = True,
) -> Pipe:
    """Make `target_state` of `target` follow `state` of `source`; return the pipe.

    The current state is copied first, in the same synchronous step as binding
    the handlers. Adding a target state named ``Err...`` adds ``Exception`` with
    it.

    Args:
        source: A local machine or a mirror.
        state: The state to follow.
        target: A local machine or a mirror.
        target_state: The state to mutate; default: the same name.
        mode: ``"add"`` (activation adds), ``"remove"`` (deactivation removes)
            or ``"both"``.
        forward_args: Pass the source transition's args along with an add. A
            mirror target sends them only when they are JSON-compatible.

    Raises:
        ValueError: An unknown mode.
        StateError: A state is not in its machine.
    """
    if mode not in _MODES:
        raise ValueError(f"mode must be one of {_MODES}, got {mode!r}")
    target_state = target_state or state
    for mach, name in ((source, state), (target, target_state)):
        if not mach.has(name):
            raise am.StateError(
                f"state {name!r} is not in machine {mach.id!r}; known states: "
                f"{list(mach.state_names())}"
            )
    piped = Pipe(source, state, target, target_state, mode, forward_args)
    piped._bind()
    piped._copy()
    return piped
