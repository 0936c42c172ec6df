"""Runs each (subscription, event id) at most once to completion, via the Redis inbox.

Fail closed: while Redis is unreachable the handler never runs; the delivery is held
(unacked, so the prefetch window throttles intake) and the claim retried with backoff;
at shutdown it is requeued. Nothing is acked unprocessed.

A commit effect that cannot be applied (``bus.effects``) turns the outcome into
:class:`Failed`: install this middleware AFTER :class:`RetriesMiddleware` in the list
(its after-hook then runs first) so the failure goes through the retry policy.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from bus.errors import EffectFailed, InboxUnavailable
from bus.inbox import AlreadyDone, Busy, Claimed, Inbox, LeaseLost
from bus.middleware.base import Middleware, Processing
from bus.outcome import Defer, Done, Failed, Outcome, Requeue

log = logging.getLogger("codebus.bus.idempotency")


class IdempotencyMiddleware(Middleware):
    """Claim before the handler, done-mark (with the handler's Redis effects) after."""

    def __init__(
        self,
        inbox: Inbox,
        *,
        max_backoff: float = 5.0,
        max_defer: float = 5.0,
        waits: Callable[[str, float], None] | None = None,
    ) -> None:
        self.inbox = inbox
        self.max_backoff = max_backoff
        # Told how long each delivery waited for its claim and for its completion
        # (e.g. InboxWaits.observe): the inbox's share of a delivery's latency.
        self.waits = waits
        # A busy claim is looked at again after at most this long, not after the whole
        # remaining lease: a redelivery that raced its predecessor's release runs soon.
        self.max_defer = max_defer

    async def _hold(
        self,
        p: Processing,
        what: str,
        op: Callable[[], Awaitable[Any]],
        started: float,
        exc: InboxUnavailable,
    ) -> Any:
        """Retry ``op`` with backoff after it failed with ``exc`` (Redis unavailable)
        until it succeeds; re-raise once the worker is stopping."""
        delay = 0.05
        while True:
            if p.stopping.is_set():
                raise exc
            log.warning(
                "%s: Redis unavailable (%s); holding delivery, retry in %.2fs", what, exc, delay
            )
            await asyncio.sleep(delay)
            delay = min(self.max_backoff, delay * 2)
            try:
                result = await op()
            except InboxUnavailable as again:
                exc = again
                continue
            self._waited(what, started)
            return result

    def _waited(self, what: str, started: float) -> None:
        if self.waits is not None:
            self.waits(what, time.perf_counter() - started)

    async def on_stop(self) -> None:
        await self.inbox.aclose()

    async def before_process(self, p: Processing) -> Outcome | None:
        assert p.event is not None
        name, event_id = p.subscription.name, p.event.id
        started = time.perf_counter()
        try:
            result = await self.inbox.claim(name, event_id)  # the common case: one try
            self._waited("claim", started)
        except InboxUnavailable as exc:
            try:
                result = await self._hold(
                    p, "claim", lambda: self.inbox.claim(name, event_id), started, exc
                )
            except InboxUnavailable:
                return Requeue("idempotency store unavailable at shutdown")
        if isinstance(result, AlreadyDone):
            return Done(duplicate=True)
        if isinstance(result, Busy):
            delay = min(result.retry_after, self.max_defer) + 0.05
            return Defer(delay, "another delivery holds the claim")
        assert isinstance(result, Claimed)
        p.state["claim"] = result  # the inbox keeps its lease alive until completion
        return None

    async def after_process(self, p: Processing, outcome: Outcome) -> Outcome:
        # The claim leaves p.state only once this hook is through with it: if the
        # delivery is cancelled meanwhile, the consumer runs this hook again with a
        # Requeue outcome, which releases it.
        claim = p.state.get("claim")
        if claim is None:
            return outcome
        if isinstance(outcome, Done):
            effects = p.ctx.effects if p.ctx is not None else []
            event_id = p.event.id if p.event is not None else None
            started = time.perf_counter()
            try:
                try:
                    await self.inbox.complete(claim, effects, event_id=event_id)
                    self._waited("complete", started)
                except InboxUnavailable as exc:
                    await self._hold(
                        p,
                        "complete",
                        lambda: self.inbox.complete(claim, effects, event_id=event_id),
                        started,
                        exc,
                    )
            except EffectFailed as exc:
                # Nothing of the commit was written: a failed attempt like a handler
                # error (retry policy, then dead letter with this reason).
                log.warning("commit of %s failed: %s", claim.key, exc)
                outcome = Failed(exc, retryable=not exc.permanent)
                await self.inbox.release(claim)
            except LeaseLost:
                log.warning(
                    "lease on %s expired before completion; another delivery owns it", claim.key
                )
            except InboxUnavailable:
                outcome = Requeue("could not record completion before shutdown")
                await self.inbox.release(claim)
        else:
            await self.inbox.release(claim)
        del p.state["claim"]
        return outcome
