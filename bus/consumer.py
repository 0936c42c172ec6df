"""Processing of one delivery, and the single place where deliveries are settled.

decode -> validate payload -> middleware.before -> handler -> middleware.after (reverse)
-> settle: ack | delayed copy + ack | dead letter + ack | nack(requeue).
A copy is always confirmed by the broker before the original is acked, so a crash in
between duplicates (which the inbox absorbs) and never loses.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from bus.abc import Broker, Delivery
from bus.context import HandlerContext
from bus.errors import BusError, Reject, Retry, Unroutable
from bus.middleware.base import Middleware, Processing
from bus.middleware.retries import describe_error
from bus.outcome import DeadLetter, Defer, Done, Failed, Outcome, Requeue, RetryLater
from bus.router import Subscription
from schemas.envelope import Event
from schemas.errors import SchemaError
from schemas.events import validate_payload
from schemas.names import (
    HEADER_ATTEMPT,
    HEADER_DEAD_AT,
    HEADER_DEAD_KIND,
    HEADER_DEAD_REASON,
    HEADER_ORIGIN_QUEUE,
)

log = logging.getLogger("codebus.bus.consumer")

AfterHook = Callable[[Processing, Outcome], Awaitable[Outcome]]


def attempt_of(headers: Mapping[str, Any]) -> int:
    """The attempt number carried in the headers (1 when absent or garbled)."""
    try:
        return max(1, int(headers.get(HEADER_ATTEMPT, 1)))
    except (TypeError, ValueError):
        return 1


class SubscriptionConsumer:
    """The ``on_delivery`` callback of one subscription's queue."""

    def __init__(
        self,
        broker: Broker,
        subscription: Subscription,
        *,
        middleware: Sequence[Middleware],
        deps: Mapping[str, Any],
        stopping: asyncio.Event,
        source: str,
    ) -> None:
        self.broker = broker
        self.subscription = subscription
        self.queue = broker.names.subscription_queue(subscription.name)
        self.middleware = list(middleware)
        # Only the hooks a middleware overrides are called (per delivery, in order).
        self._before = [
            m.before_process
            for m in self.middleware
            if type(m).before_process is not Middleware.before_process
        ]
        self._after = [
            m.after_process
            for m in reversed(self.middleware)
            if type(m).after_process is not Middleware.after_process
        ]
        self.deps = deps
        self.stopping = stopping
        self.source = source
        self.in_flight: set[asyncio.Task[Any]] = set()
        # Progress, for readiness: deliveries taken and not yet settled, when one was
        # last settled, and since when the prefetch window has been full.
        self.unsettled = 0
        self.last_settled = time.monotonic()
        self.full_since: float | None = None
        self.prefetch = 0  # set by the worker when it starts consuming
        self.logger = logging.getLogger(f"codebus.handler.{subscription.name}")

    async def __call__(self, delivery: Delivery) -> None:
        task = asyncio.current_task()
        if task is not None:
            self.in_flight.add(task)
        self.unsettled += 1
        if self.prefetch and self.unsettled >= self.prefetch and self.full_since is None:
            self.full_since = time.monotonic()
        try:
            try:
                outcome = await self.process(delivery)
            except asyncio.CancelledError:
                # Forced shutdown after the grace period, or the channel closed under
                # us (aiormq cancels its consumer tasks): give the message back. On a
                # dead channel the nack is a no-op and the broker requeues it anyway.
                await asyncio.shield(delivery.nack(requeue=True))
                raise
            # Still in flight while settling: a graceful stop waits for a retry or
            # dead-letter copy to be confirmed before it closes the channel (recorded
            # acks are drained at the close). Cancelled here, the delivery is left
            # unsettled and closing the channel returns it.
            try:
                await self.settle(delivery, outcome)
            except Exception:  # never leave a delivery unsettled: its prefetch slot leaks
                log.exception("settling %s failed; requeueing it", delivery.message.message_id)
                await delivery.nack(requeue=True)
        finally:
            if task is not None:
                self.in_flight.discard(task)
            self.unsettled -= 1
            self.last_settled = time.monotonic()
            if self.unsettled < self.prefetch:
                self.full_since = None

    def stalled_for(self) -> float:
        """Seconds the prefetch window has been full with nothing settled (0 if not)."""
        if self.full_since is None:
            return 0.0
        return time.monotonic() - max(self.full_since, self.last_settled)

    async def process(self, delivery: Delivery) -> Outcome:
        """Run validation, middleware and the handler; return what to do.

        Never raises an exception (a failing middleware hook is a failed attempt, so the
        delivery is always settled); on cancellation the after-hooks still run with a
        :class:`Requeue` outcome (so the idempotency claim is released), then the
        cancellation propagates."""
        p = Processing(
            delivery, self.subscription, attempt_of(delivery.message.headers), self.stopping
        )
        ran = 0  # after-hooks that finished
        try:
            try:
                outcome = self._validate(p)
                if outcome is None:
                    outcome = await self._run(p)
            except Exception as exc:  # a before-hook failed: a failed attempt
                log.exception("middleware failed before %s", delivery.message.message_id)
                outcome = Failed(exc, retryable=True)
            for after in self._after:
                try:
                    outcome = await after(p, outcome)
                except Exception as exc:
                    log.exception("middleware failed after %s", delivery.message.message_id)
                    outcome = Failed(exc, retryable=True)
                ran += 1
        except asyncio.CancelledError:
            # The interrupted hook runs again: hooks release what they still hold.
            await asyncio.shield(self._abandon(p, self._after[ran:]))
            raise
        if isinstance(outcome, Failed):  # no retries middleware installed
            kind = "rejected" if not outcome.retryable else "exhausted"
            outcome = DeadLetter(kind, describe_error(outcome.error))
        return outcome

    async def _abandon(self, p: Processing, remaining: Sequence[AfterHook]) -> None:
        """The delivery is given up (cancelled): let the after-hooks that have not run
        yet release what they hold (inbox claims). Their outcome is not used."""
        outcome: Outcome = Requeue("delivery cancelled")
        for after in remaining:
            try:
                outcome = await after(p, outcome)
            except Exception:
                log.exception("middleware failed releasing %s", p.delivery.message.message_id)

    def _validate(self, p: Processing) -> Outcome | None:
        try:
            p.event = Event.from_json(p.delivery.message.body)
        except SchemaError as exc:
            return DeadLetter("invalid", str(exc))
        sub = self.subscription
        if sub.wants_envelope:
            p.state["arg"] = p.event
            return None
        try:
            payload = validate_payload(p.event.type, p.event.data)
        except SchemaError as exc:
            return DeadLetter("invalid", str(exc))
        if not isinstance(payload, sub.accepts):
            wanted = " | ".join(t.__name__ for t in sub.accepts)
            return DeadLetter(
                "unexpected_type",
                f"subscription {sub.name} takes {wanted}, got {p.event.type} "
                f"({type(payload).__name__})",
            )
        p.state["arg"] = payload
        return None

    async def _run(self, p: Processing) -> Outcome:
        for before in self._before:
            early = await before(p)
            if early is not None:
                return early
        assert p.event is not None
        p.ctx = HandlerContext(
            event=p.event,
            subscription=self.subscription.name,
            attempt=p.attempt,
            broker=self.broker,
            deps=self.deps,
            logger=self.logger,
            source=self.source,
        )
        try:
            await self.subscription.handler(p.state["arg"], p.ctx)
        except Retry as exc:
            return Failed(exc, retryable=True, delay=exc.delay)
        except Reject as exc:
            return Failed(exc, retryable=False)
        except Unroutable as exc:
            # No queue is bound for what the handler published: retrying cannot help
            # while the topology stays the same. Dead-lettered at once with the routing
            # key in the reason; replay it once a subscriber exists.
            return Failed(exc, retryable=False)
        except Exception as exc:
            return Failed(exc, retryable=True)
        return Done()

    async def settle(self, delivery: Delivery, outcome: Outcome) -> None:
        """Act on the outcome; if the broker refuses a copy, requeue the original."""
        msg = delivery.message
        try:
            if isinstance(outcome, RetryLater):
                copy = msg.with_headers(**{HEADER_ATTEMPT: outcome.attempt})
                await self.broker.send(self.queue, copy, delay=outcome.delay)
            elif isinstance(outcome, Defer):
                await self.broker.send(self.queue, msg, delay=outcome.delay)
            elif isinstance(outcome, DeadLetter):
                await self.broker.dead_letter(
                    msg.with_headers(
                        **{
                            HEADER_DEAD_KIND: outcome.kind,
                            HEADER_DEAD_REASON: outcome.reason,
                            HEADER_ORIGIN_QUEUE: self.queue,
                            HEADER_ATTEMPT: attempt_of(msg.headers),
                            HEADER_DEAD_AT: datetime.now(UTC).isoformat(),
                        }
                    )
                )
            elif isinstance(outcome, Requeue):
                await delivery.nack(requeue=True)
                return
        except BusError as exc:
            log.warning("could not settle %s (%s); requeueing it", msg.message_id, exc)
            await delivery.nack(requeue=True)
            return
        await delivery.ack()
