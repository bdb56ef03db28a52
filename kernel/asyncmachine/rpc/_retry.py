"""Retry policy of mirrors: how often and how fast to reconnect and resend."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["RetryPolicy"]


@dataclass(frozen=True)
class RetryPolicy:
    """Attempts and exponential backoff for reconnecting and resending.

    Attributes:
        attempts: Connection attempts after a failed or lost connection before
            the mirror gives up (0: no retry). It is also how many times a
            mutation without a reply within the call timeout is sent again. The
            count of connection attempts starts over after every successful
            handshake.
        backoff: Seconds before the first retry; each later one doubles it.
        max_backoff: Upper limit of the delay in seconds.
    """

    attempts: int = 10
    backoff: float = 0.1
    max_backoff: float = 5.0

    def __post_init__(self) -> None:
        if type(self.attempts) is not int or self.attempts < 0:
            raise ValueError(f"attempts must be an int >= 0, got {self.attempts!r}")
        if not self.backoff >= 0:
            raise ValueError(f"backoff must be >= 0 seconds, got {self.backoff!r}")
        if not self.max_backoff >= self.backoff:
            raise ValueError(
                f"max_backoff ({self.max_backoff!r}) must be >= backoff "
                f"({self.backoff!r})"
            )

    def delay(self, attempt: int) -> float:
        """Return the seconds to wait before retry number `attempt` (from 1)."""
        try:
            growth = 2.0 ** max(0, attempt - 1)
        except OverflowError:
            # 2.0 ** 1024 and larger powers exceed the largest float.
            return self.max_backoff
        return min(self.max_backoff, self.backoff * growth)
