"""asyncmachine: a clock-based state machine where many states are active at once.

Code is bound to states, relations (add, remove, require, after) decide what a
mutation really does, and every state carries a logical clock::

    import asyncmachine as am

    mach = am.Machine(
        {"Start": am.State(add=["Ready"]), "Ready": am.State(require=["Start"])},
        id="foo",
    )
    mach.add("Start")
    str(mach)  # '(Start:1 Ready:1)'
"""

from ._errors import HandlerTimeoutError, SchemaError, StateError
from ._machine import Machine, machines
from ._schema import (
    EXCEPTION,
    State,
    StatesBase,
    extend_state,
    merge_schemas,
    set_state,
)
from ._tracer import Tracer
from ._transition import Transition
from ._types import Event, LogLevel, Mutation, MutationType, Result, Source
from ._waits import StateContext, Waiter

__version__ = "0.1.0"

__all__ = [
    "EXCEPTION",
    "Event",
    "HandlerTimeoutError",
    "LogLevel",
    "Machine",
    "Mutation",
    "MutationType",
    "Result",
    "SchemaError",
    "Source",
    "State",
    "StateContext",
    "StateError",
    "StatesBase",
    "Tracer",
    "Transition",
    "Waiter",
    "extend_state",
    "machines",
    "merge_schemas",
    "set_state",
]
