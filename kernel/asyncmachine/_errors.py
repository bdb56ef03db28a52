"""Exceptions raised by the machine core."""

from __future__ import annotations

__all__ = ["HandlerTimeoutError", "SchemaError", "StateError"]


class StateError(ValueError):
    """A call named a state that is not in the machine's schema."""


class SchemaError(ValueError):
    """A schema is invalid: a relation names an unknown state, or a field is bad."""


class HandlerTimeoutError(TimeoutError):
    """A handler ran longer than the machine's handler timeout.

    Python cannot preempt a running function, so the overrun is detected when the
    handler returns. The transition is then treated as the reference treats a
    timeout.
    """
