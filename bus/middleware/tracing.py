"""A ``process <type>`` CONSUMER span around each handler run, child of the span that
published the event (its ``traceparent``); retries and dead letters are span events.

Installed by the composition root only when tracing is on (:func:`bus.tracing.enabled`),
first in the list: the span is current while the other middleware, the handler, its tool
calls and its publishes run (so they become its children), and it ends last, once the
outcome is final."""

from __future__ import annotations

import asyncio
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import Span, SpanKind, Status, StatusCode

from bus import tracing
from bus.middleware.base import Middleware, Processing
from bus.outcome import DeadLetter, Defer, Done, Outcome, Requeue, RetryLater

_SPAN = "tracing.span"
_TOKEN = "tracing.token"
_TASK = "tracing.task"


class TracingMiddleware(Middleware):
    """Opens the consumer span before the handler and closes it with the outcome."""

    async def before_process(self, p: Processing) -> Outcome | None:
        span = self._start(p)
        p.state[_SPAN] = span
        p.state[_TOKEN] = otel_context.attach(trace.set_span_in_context(span))
        p.state[_TASK] = asyncio.current_task()
        return None

    async def after_process(self, p: Processing, outcome: Outcome) -> Outcome:
        span: Span | None = p.state.pop(_SPAN, None)
        token = p.state.pop(_TOKEN, None)
        if span is None:
            if not isinstance(outcome, DeadLetter):
                return outcome
            span = self._start(p)  # an invalid event never reached before_process
        try:
            _record(span, outcome)
        finally:
            span.end()
            # A cancelled delivery ends in a shielded copy of the task's context.
            if token is not None and p.state.pop(_TASK, None) is asyncio.current_task():
                otel_context.detach(token)
        return outcome

    @staticmethod
    def _start(p: Processing) -> Span:
        ev = p.event
        msg = p.delivery.message
        attrs: dict[str, Any] = {
            "messaging.system": "rabbitmq",
            "messaging.operation.type": "process",
            "messaging.message.id": ev.id if ev else (msg.message_id or ""),
            "codebus.subscription": p.subscription.name,
            "codebus.attempt": p.attempt,
        }
        if ev is not None:
            attrs["messaging.destination.name"] = ev.type
            if ev.correlationid:
                attrs["codebus.correlationid"] = ev.correlationid
            if ev.causationid:
                attrs["codebus.causationid"] = ev.causationid
        name = f"process {ev.type if ev else 'invalid'}"
        return tracing.tracer().start_span(
            name,
            context=tracing.extract(ev.traceparent if ev else None),
            kind=SpanKind.CONSUMER,
            attributes=attrs,
        )


def _record(span: Span, outcome: Outcome) -> None:
    """The outcome as an attribute, and retries / dead letters as span events."""
    if isinstance(outcome, Done):
        span.set_attribute("codebus.outcome", "duplicate" if outcome.duplicate else "done")
    elif isinstance(outcome, RetryLater):
        span.set_attribute("codebus.outcome", "retry")
        span.add_event(
            "retry",
            {
                "codebus.retry.delay_s": outcome.delay,
                "codebus.retry.attempt": outcome.attempt,
                "codebus.reason": outcome.reason,
            },
        )
        span.set_status(Status(StatusCode.ERROR, outcome.reason))
    elif isinstance(outcome, DeadLetter):
        span.set_attribute("codebus.outcome", "dead_letter")
        span.add_event(
            "dead_letter",
            {"codebus.dead_letter.kind": outcome.kind, "codebus.reason": outcome.reason},
        )
        span.set_status(Status(StatusCode.ERROR, outcome.reason))
    elif isinstance(outcome, Defer):
        span.set_attribute("codebus.outcome", "deferred")
        span.add_event(
            "deferred", {"codebus.defer.delay_s": outcome.delay, "codebus.reason": outcome.reason}
        )
    elif isinstance(outcome, Requeue):
        span.set_attribute("codebus.outcome", "requeued")
        span.add_event("requeued", {"codebus.reason": outcome.reason})
