"""What the runtime does with a delivery once processing ends. Exactly one place
(``bus.consumer``) turns an outcome into ack / delayed send / dead letter / requeue."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Done:
    """The handler finished (or the event was already done): ack."""

    duplicate: bool = False


@dataclass(frozen=True)
class Failed:
    """The handler raised; middleware (retries) decides what happens next."""

    error: BaseException
    retryable: bool = True
    delay: float | None = None


@dataclass(frozen=True)
class RetryLater:
    """Send a copy back to the queue after ``delay`` seconds as attempt ``attempt``; ack."""

    delay: float
    attempt: int
    reason: str


@dataclass(frozen=True)
class Defer:
    """Try again after ``delay`` without counting an attempt (someone else holds the
    claim); ack after the copy is confirmed."""

    delay: float
    reason: str


@dataclass(frozen=True)
class DeadLetter:
    """Put the message into the dead-letter queue with its reason; ack."""

    kind: str  # invalid | rejected | exhausted | unexpected_type
    reason: str


@dataclass(frozen=True)
class Requeue:
    """Give the message back to the broker now (nack with requeue)."""

    reason: str


Outcome = Done | Failed | RetryLater | Defer | DeadLetter | Requeue
