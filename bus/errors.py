"""Exceptions of the messaging runtime.

    BusError                      root of everything raised by bus/
    ├── BrokerUnavailable         cannot reach or lost the broker; not sent, safe to retry
    │   └── PublishOutcomeUnknown sent, but no confirm came: the broker may have taken it
    ├── PublishError              the broker did not accept a publish
    │   ├── Unroutable            no queue is bound for the routing key (mandatory)
    │   └── PublishNacked         the broker nacked the publish (publisher confirms)
    ├── InboxUnavailable          Redis unreachable: fail closed, requeue
    ├── EffectFailed              a commit effect cannot be applied: a failed attempt
    └── HandlerSignal             raised by handlers to steer the runtime
        ├── Retry                 retry later (after ``delay`` seconds, or backoff)
        └── Reject                permanent failure: dead-letter at once with reason

Handlers never ack. They return (ack), raise :class:`Retry`, raise :class:`Reject`,
or let any other exception escape (treated as retryable). Invalid events are
dead-lettered by the runtime without calling the handler.
"""

from __future__ import annotations


def describe(exc: BaseException) -> str:
    """An exception's message, or its type name when the message is empty (``str()`` of
    a bare ``TimeoutError()`` is '')."""
    return str(exc) or type(exc).__name__


class BusError(Exception):
    """Root of the bus exceptions; ``event_id`` names the event when one is involved."""

    def __init__(self, message: str, *, event_id: str | None = None) -> None:
        super().__init__(message)
        self.event_id = event_id


class BrokerUnavailable(BusError):
    """The broker cannot be reached or the connection dropped."""


class PublishOutcomeUnknown(BrokerUnavailable):
    """A publish was handed to the broker but its confirm never came (timeout, connection
    lost after sending): the event may or may not have been taken. Retrying is safe only
    when the retry carries the same event id, so subscriber inboxes drop the duplicate."""


class PublishError(BusError):
    """The broker did not accept a published message."""


class Unroutable(PublishError):
    """No queue is bound for the routing key; with ``mandatory`` this is an error."""


class PublishNacked(PublishError):
    """The broker negatively confirmed a publish."""


class InboxUnavailable(BusError):
    """The idempotency store (Redis) is unreachable; the message must be requeued."""


class EffectFailed(BusError):
    """A ``ctx.on_commit`` effect could not be applied; nothing of the commit was written
    and the event is not done. ``permanent`` when the effect itself is broken (it
    raised, or passed a value Redis cannot take): retrying the event cannot help."""

    def __init__(self, message: str, *, event_id: str | None = None, permanent: bool) -> None:
        super().__init__(message, event_id=event_id)
        self.permanent = permanent


class HandlerSignal(Exception):
    """Base of the exceptions handlers raise to tell the runtime what to do."""


class Retry(HandlerSignal):
    """Retry the event later: after ``delay`` seconds, or the policy's backoff if None."""

    def __init__(self, reason: str = "retry requested", *, delay: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.delay = delay


class Reject(HandlerSignal):
    """The event can never succeed: dead-letter it at once with ``reason``."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason
