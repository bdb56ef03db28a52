"""The tracer interface: hooks that observe a machine without changing it."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._machine import Machine
    from ._transition import Transition

__all__ = ["Tracer"]


class Tracer:
    """Receives a machine's lifecycle and transitions; every method is a no-op.

    Subclass it and override what you need, then pass it to ``Machine(tracers=...)``
    or ``mach.add_tracer``. Methods run inside the transition, in the thread that
    runs the queue, so they must be quick and must not mutate the machine directly
    (a mutation from a tracer is queued like one from a handler).
    """

    def machine_init(self, mach: Machine) -> None:
        """The tracer was attached to `mach`."""

    def transition_start(self, tx: Transition) -> None:
        """A transition resolved its targets; negotiation starts next."""

    def transition_end(self, tx: Transition, result: Any) -> None:
        """A transition finished with `result` (an ``am.Result``)."""

    def queue_end(self, mach: Machine) -> None:
        """The machine's queue was drained."""

    def schema_change(self, mach: Machine, old_schema: dict[str, Any]) -> None:
        """``set_schema`` replaced the machine's schema."""

    def handlers_bound(self, mach: Machine, group_id: str) -> None:
        """A handler group was bound."""

    def machine_dispose(self, mach_id: str) -> None:
        """The machine was disposed."""
