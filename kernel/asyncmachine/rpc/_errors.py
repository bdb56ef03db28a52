"""Errors of the sync protocol's mirrors and sources."""

from __future__ import annotations

__all__ = [
    "AccessDeniedError",
    "HandshakeError",
    "MirrorError",
    "RemoteError",
    "RemoteMutationError",
    "RpcError",
]


class RemoteError(Exception):
    """An error a mirror added to its source with ``add_err``.

    Only the message crosses the network, so the source stores this in place of
    the original exception.
    """


class MirrorError(Exception):
    """Base of the errors a mirror raises for protocol failures."""


class HandshakeError(MirrorError):
    """The source rejected the mirror's hello.

    Attributes:
        code: The source's error code, e.g. ``not_found`` or ``invalid_options``.
    """

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code


class AccessDeniedError(HandshakeError, PermissionError):
    """The source rejected the hello's token or client id."""


class RemoteMutationError(MirrorError):
    """The source rejected a mutation request (not a canceled mutation)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code


class RpcError(MirrorError):
    """A reply or push from the source was invalid."""
