"""Schemas of the demo's machines: one shared family, extended per machine.

Both machines share ``Start``, ``Ready``, ``Heartbeat``, ``Healthcheck``,
``Exception``, the error states and ``Msg`` (Multi: a message was received).
``server-foo`` adds ``Bored``. ``Msg`` and ``Bored`` remove each other, so the
one added last wins. ``Msg`` removing ``Bored`` alone is not enough, because
``Msg`` stays active after a message and an active state's Remove relation
blocks a called state. The browser machine adds ``SubmitMsg`` (Multi: the user
submitted the input box).
"""

from __future__ import annotations

import asyncmachine as am

SHARED_SCHEMA: dict[str, am.State] = {
    "Start": am.State(add=["Ready"]),
    "Ready": am.State(require=["Start"]),
    # Health states. An add of one of them alone is a health transition, which
    # never starts an auto transition.
    "Heartbeat": am.State(multi=True),
    "Healthcheck": am.State(multi=True),
    # Error states require Exception, so they end together with it. The
    # machine adds Exception to the schema itself, as a Multi state.
    "ErrNetwork": am.State(require=["Exception"]),
    "ErrHandlerTimeout": am.State(require=["Exception"]),
    "Msg": am.State(multi=True),
}

FOO_SCHEMA: dict[str, am.State] = am.merge_schemas(
    SHARED_SCHEMA,
    {
        "Msg": am.extend_state(SHARED_SCHEMA["Msg"], am.State(remove=["Bored"])),
        "Bored": am.State(require=["Ready"], remove=["Msg"]),
    },
)

BAR_SCHEMA: dict[str, am.State] = am.merge_schemas(
    SHARED_SCHEMA,
    {"SubmitMsg": am.State(multi=True, require=["Ready"])},
)
