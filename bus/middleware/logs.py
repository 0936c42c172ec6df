"""One log line per settled delivery (debug for success, warning for retries, error for
dead letters), and the event's fields on every line logged while it is processed.

The fields (``event_id``, ``type``, ``correlationid``, ``causationid``, ``subscription``,
``attempt``) live in a context variable from ``before_process`` to the end of
``after_process``: any logger, in the handler, a flow or a tool, reads them through
:func:`current_event_fields` (the log set-up's filter copies them onto each record)."""

from __future__ import annotations

import logging
import time
from contextvars import ContextVar, Token
from typing import Any

from bus.middleware.base import Middleware, Processing
from bus.outcome import DeadLetter, Defer, Done, Outcome, Requeue, RetryLater

log = logging.getLogger("codebus.worker")

EventFields = dict[str, Any]
# The delivery itself, not its fields: they are built only when a line is logged.
_CURRENT: ContextVar[Processing | None] = ContextVar("codebus_delivery", default=None)
_TOKEN = "logs.token"


def current_event_fields() -> EventFields | None:
    """The fields of the event being processed in this task, None outside one."""
    p = _CURRENT.get()
    return None if p is None else event_fields(p)


def event_fields(p: Processing) -> EventFields:
    """The log fields of one delivery (from the envelope, or the message if invalid)."""
    ev = p.event
    if ev is None:
        return {
            "event_id": p.delivery.message.message_id,
            "type": None,
            "correlationid": None,
            "causationid": None,
            "subscription": p.subscription.name,
            "attempt": p.attempt,
        }
    return {
        "event_id": ev.id,
        "type": ev.type,
        "correlationid": ev.correlationid,
        "causationid": ev.causationid,
        "subscription": p.subscription.name,
        "attempt": p.attempt,
    }


class LoggingMiddleware(Middleware):
    """Logs the outcome of each delivery with its event id, type and subscription."""

    async def before_process(self, p: Processing) -> Outcome | None:
        p.state[_TOKEN] = _CURRENT.set(p)
        return None

    async def after_process(self, p: Processing, outcome: Outcome) -> Outcome:
        token: Token[Processing | None] | None = p.state.pop(_TOKEN, None)
        try:
            self._log(p, outcome)
        finally:
            if token is not None:
                try:
                    _CURRENT.reset(token)
                except ValueError:  # a cancelled delivery ends in a shielded copy
                    pass
        return outcome

    @staticmethod
    def _log(p: Processing, outcome: Outcome) -> None:
        if type(outcome) is Done and not log.isEnabledFor(logging.DEBUG):
            return  # the common case logs nothing: no line is built
        ms = (time.perf_counter() - p.started) * 1000
        ev = p.event
        where = (
            f"{p.subscription.name} {ev.type if ev else '?'} "
            f"id={ev.id if ev else p.delivery.message.message_id} attempt={p.attempt}"
        )
        if isinstance(outcome, Done):
            if log.isEnabledFor(logging.DEBUG):
                dup = " (duplicate)" if outcome.duplicate else ""
                log.debug("%s done%s in %.1fms", where, dup, ms, extra=event_fields(p))
        elif isinstance(outcome, RetryLater):
            log.warning(
                "%s failed, retry in %.1fs: %s",
                where,
                outcome.delay,
                outcome.reason,
                extra=event_fields(p),
            )
        elif isinstance(outcome, Defer):
            log.info(
                "%s deferred %.1fs: %s", where, outcome.delay, outcome.reason, extra=event_fields(p)
            )
        elif isinstance(outcome, DeadLetter):
            log.error(
                "%s dead-lettered (%s): %s",
                where,
                outcome.kind,
                outcome.reason,
                extra=event_fields(p),
            )
        elif isinstance(outcome, Requeue):
            log.warning("%s requeued: %s", where, outcome.reason, extra=event_fields(p))
