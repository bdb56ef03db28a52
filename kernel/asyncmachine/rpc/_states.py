"""State schemas of the RPC parts: listener, source session, client, consumer.

The parts of the sync protocol are asyncmachines themselves, so that tools can
inspect, pipe and draw them. They are the listener of a state source
(``rm-<source id>-<transport>``), one session per connected mirror
(``rs-<source id>-<n>``), the client part of a mirror (``rc-<client id>``) and
the mirror itself (``rnm-<client id>``). The
schemas follow asyncmachine-go's ``pkg/rpc`` and ``pkg/states`` relations. Every
error state requires ``Exception``, so adding one goes with ``add_err_state``.

Usage::

    session.machine.is_active(ServerStates.HandshakeDone)
    mirror.client.when(ClientStates.Ready)
"""

from __future__ import annotations

from collections.abc import Iterable

import asyncmachine as am

__all__ = [
    "BASIC_SCHEMA",
    "CLIENT_SCHEMA",
    "CONNECTED_SCHEMA",
    "CONSUMER_SCHEMA",
    "LISTENER_SCHEMA",
    "SERVER_SCHEMA",
    "SHARED_SCHEMA",
    "STATE_SOURCE_SCHEMA",
    "ClientStates",
    "ListenerStates",
    "ServerStates",
]


class BasicStates(am.StatesBase):
    """States every long-running part has."""

    ErrNetwork: str
    ErrHandlerTimeout: str
    Start: str
    Ready: str
    Healthcheck: str
    Heartbeat: str


class SharedStates(BasicStates):
    """States of both ends of a sync session."""

    ErrOnClient: str
    ErrNetworkTimeout: str
    ErrRpc: str
    ErrDelivery: str
    Handshaking: str
    HandshakeDone: str


class ServerStates(SharedStates):
    """States of one source session (the reference's RPC server)."""

    RpcStarting: str
    RpcAccepting: str
    RpcReady: str
    ClientConnected: str
    MetricSync: str
    WebSocketTunnel: str


class ClientStates(SharedStates):
    """States of the client part of a mirror."""

    ErrConnecting: str
    Connecting: str
    Connected: str
    Disconnecting: str
    Disconnected: str
    RetryingCall: str
    CallRetryFailed: str
    RetryingConn: str
    ConnRetryFailed: str
    ServerDelivering: str
    ServerPayload: str
    MetricSync: str


class ListenerStates(am.StatesBase):
    """States of the listener that accepts connections for one state source.

    It plays the part of the reference's mux: one session per connected mirror.
    """

    Start: str
    Ready: str
    ClientConnected: str
    HasClients: str
    NewServerErr: str


def _group_exclusive(group: Iterable[str], **extra: am.State) -> dict[str, am.State]:
    """Return states of which at most one is active: each removes the others."""
    names = list(group)
    schema = {}
    for name in names:
        others = [other for other in names if other != name]
        base = extra.get(name, am.State())
        schema[name] = am.extend_state(base, am.State(remove=others))
    return schema


_EXCEPTION = am.EXCEPTION
_REQUIRES_EXCEPTION = am.State(require=[_EXCEPTION])

BASIC_SCHEMA: dict[str, am.State] = {
    _EXCEPTION: am.State(multi=True),
    "ErrNetwork": am.State(multi=True, add=[_EXCEPTION], require=[_EXCEPTION]),
    "ErrHandlerTimeout": am.State(multi=True, add=[_EXCEPTION], require=[_EXCEPTION]),
    "Start": am.State(),
    "Ready": am.State(require=["Start"]),
    "Healthcheck": am.State(multi=True),
    "Heartbeat": am.State(),
}
"""The reference's basic mixin."""

CONNECTED_SCHEMA: dict[str, am.State] = {
    "ErrConnecting": _REQUIRES_EXCEPTION,
    **_group_exclusive(
        ["Connecting", "Connected", "Disconnecting", "Disconnected"],
        Connecting=am.State(require=["Start"]),
        Connected=am.State(require=["Start"]),
        Disconnected=am.State(auto=True),
    ),
}
"""The reference's connection mixin: its four states exclude each other."""

STATE_SOURCE_SCHEMA: dict[str, am.State] = {
    "ErrOnClient": _REQUIRES_EXCEPTION,
}
"""States a machine exposed as a source may add: errors raised by its mirrors."""

SHARED_SCHEMA: dict[str, am.State] = am.merge_schemas(
    BASIC_SCHEMA,
    STATE_SOURCE_SCHEMA,
    {
        "ErrNetwork": _REQUIRES_EXCEPTION,
        "ErrNetworkTimeout": _REQUIRES_EXCEPTION,
        "ErrRpc": _REQUIRES_EXCEPTION,
        "ErrDelivery": _REQUIRES_EXCEPTION,
    },
    _group_exclusive(
        ["Handshaking", "HandshakeDone"],
        Handshaking=am.State(require=["Start"]),
        HandshakeDone=am.State(require=["Start"]),
    ),
)
"""States of both ends of a sync session."""

_RPC_GROUP = _group_exclusive(
    ["RpcStarting", "RpcAccepting", "RpcReady"],
    RpcStarting=am.State(require=["Start"]),
    RpcAccepting=am.State(require=["Start"]),
    RpcReady=am.State(require=["Start"]),
)

SERVER_SCHEMA: dict[str, am.State] = am.merge_schemas(
    SHARED_SCHEMA,
    {
        "ErrNetwork": am.State(require=[_EXCEPTION], remove=["ClientConnected"]),
        "HandshakeDone": am.extend_state(
            SHARED_SCHEMA["HandshakeDone"],
            am.State(require=["ClientConnected"], remove=[_EXCEPTION]),
        ),
        "Start": am.State(add=["RpcStarting"]),
        "Ready": am.State(auto=True, require=["HandshakeDone", "RpcReady"]),
    },
    _RPC_GROUP,
    {
        "ClientConnected": am.State(require=["RpcReady"]),
        "MetricSync": am.State(multi=True),
        "WebSocketTunnel": am.State(),
    },
)
"""One source session. ``MetricSync`` ticks once per full resync it served."""

CLIENT_SCHEMA: dict[str, am.State] = am.merge_schemas(
    SHARED_SCHEMA,
    CONNECTED_SCHEMA,
    {
        "ErrNetwork": am.State(require=[_EXCEPTION], remove=["Connecting"]),
        "Start": am.State(add=["Connecting"], remove=["ConnRetryFailed"]),
        "Ready": am.State(auto=True, require=["HandshakeDone"]),
        "Connected": am.extend_state(
            CONNECTED_SCHEMA["Connected"],
            am.State(remove=["RetryingConn"], add=["Handshaking"]),
        ),
        "Handshaking": am.extend_state(
            SHARED_SCHEMA["Handshaking"], am.State(require=["Connected"])
        ),
        "HandshakeDone": am.extend_state(
            SHARED_SCHEMA["HandshakeDone"], am.State(require=["Connected"])
        ),
        "RetryingCall": am.State(require=["Start"]),
        "CallRetryFailed": am.State(
            remove=["RetryingCall"], add=["ErrNetwork", _EXCEPTION]
        ),
        "RetryingConn": am.State(require=["Start"]),
        "ConnRetryFailed": am.State(remove=["Start"]),
        "ServerDelivering": am.State(multi=True, require=["Connected"]),
        "ServerPayload": am.State(multi=True, require=["Connected"]),
        "MetricSync": am.State(multi=True),
    },
)
"""The client part of a mirror. ``MetricSync`` ticks once per full resync."""

LISTENER_SCHEMA: dict[str, am.State] = {
    _EXCEPTION: am.State(multi=True, remove=["Ready"]),
    "Start": am.State(),
    "Ready": am.State(require=["Start"]),
    "ClientConnected": am.State(multi=True, require=["Start"]),
    "HasClients": am.State(require=["Start"]),
    "NewServerErr": _REQUIRES_EXCEPTION,
}
"""The listener of a state source; ``ClientConnected`` pulses per connection."""

CONSUMER_SCHEMA: dict[str, am.State] = {
    _EXCEPTION: am.State(multi=True),
    "ServerPayload": am.State(multi=True),
}
"""A local machine that receives payloads sent by a source to a mirror."""
