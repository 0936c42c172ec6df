"""One log line per settled delivery: debug for success, warning for retries, error for
dead letters."""

from __future__ import annotations

import logging
import time

from bus.middleware.base import Middleware, Processing
from bus.outcome import DeadLetter, Defer, Done, Outcome, Requeue, RetryLater

log = logging.getLogger("codebus.worker")


class LoggingMiddleware(Middleware):
    """Logs the outcome of each delivery with its event id, type and subscription."""

    async def after_process(self, p: Processing, outcome: Outcome) -> Outcome:
        if type(outcome) is Done and not log.isEnabledFor(logging.DEBUG):
            return outcome  # the common case logs nothing: no line is built
        ms = (time.perf_counter() - p.started) * 1000
        ev = p.event
        where = (
            f"{p.subscription.name} {ev.type if ev else '?'} "
            f"id={ev.id if ev else p.delivery.message.message_id} attempt={p.attempt}"
        )
        if isinstance(outcome, Done):
            log.debug("%s done%s in %.1fms", where, " (duplicate)" if outcome.duplicate else "", ms)
        elif isinstance(outcome, RetryLater):
            log.warning("%s failed, retry in %.1fs: %s", where, outcome.delay, outcome.reason)
        elif isinstance(outcome, Defer):
            log.info("%s deferred %.1fs: %s", where, outcome.delay, outcome.reason)
        elif isinstance(outcome, DeadLetter):
            log.error("%s dead-lettered (%s): %s", where, outcome.kind, outcome.reason)
        elif isinstance(outcome, Requeue):
            log.warning("%s requeued: %s", where, outcome.reason)
        return outcome
