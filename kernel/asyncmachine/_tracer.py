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
        """Handle the attachment of this tracer to `mach`."""

    def transition_start(self, tx: Transition) -> None:
        """Handle a transition that resolved its targets, before negotiation."""

    def transition_end(self, tx: Transition, result: Any) -> None:
        """Handle a finished transition and its `result` (an ``am.Result``)."""

    def queue_end(self, mach: Machine) -> None:
        """Handle the end of a queue drain of `mach`."""

    def schema_change(self, mach: Machine, old_schema: dict[str, Any]) -> None:
        """Handle a schema replaced by ``set_schema`` (`old_schema` is the previous)."""

    def handlers_bound(self, mach: Machine, group_id: str) -> None:
        """Handle the binding of the handler group `group_id` to `mach`."""

    def machine_dispose(self, mach_id: str) -> None:
        """Handle the disposal of the machine `mach_id`."""
