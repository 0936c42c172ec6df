"""``codebus_inbox_outcomes_total{operation,outcome}``: what the Redis inbox answered.

    claim     claimed | duplicate (already done) | busy (another delivery holds it)
              | unavailable (Redis down: the delivery is held, failed closed)
    complete  done | already_done | lease_lost | effect_failed | unavailable

An :class:`Inbox` that counts; the worker's composition root builds this one (the
idempotency middleware sees no difference)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from prometheus_client import CollectorRegistry, Counter

from bus.effects import Effect
from bus.errors import EffectFailed, InboxUnavailable
from bus.inbox import AlreadyDone, Busy, Claimed, ClaimResult, Inbox, LeaseLost

CLAIM_OUTCOMES = ("claimed", "duplicate", "busy", "unavailable")
COMPLETE_OUTCOMES = ("done", "already_done", "lease_lost", "effect_failed", "unavailable")


class InboxOutcomes:
    """The counter, with every label pair created up front (so rates start at 0)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.counter = Counter(
            "codebus_inbox_outcomes",
            "Answers of the Redis inbox, by operation (claim, complete) and outcome",
            ["operation", "outcome"],
            registry=registry,
        )
        self.children = {
            (op, o): self.counter.labels(op, o)
            for op, outcomes in (("claim", CLAIM_OUTCOMES), ("complete", COMPLETE_OUTCOMES))
            for o in outcomes
        }

    def inc(self, operation: str, outcome: str) -> None:
        self.children[(operation, outcome)].inc()


class CountingInbox(Inbox):
    """An :class:`Inbox` that counts each claim and completion by outcome."""

    def __init__(self, *args: Any, outcomes: InboxOutcomes, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.outcomes = outcomes

    async def claim(self, subscription: str, event_id: str) -> ClaimResult:
        try:
            result = await super().claim(subscription, event_id)
        except InboxUnavailable:
            self.outcomes.inc("claim", "unavailable")
            raise
        if isinstance(result, Claimed):
            self.outcomes.inc("claim", "claimed")
        elif isinstance(result, AlreadyDone):
            self.outcomes.inc("claim", "duplicate")
        elif isinstance(result, Busy):
            self.outcomes.inc("claim", "busy")
        return result

    async def complete(
        self, claim: Claimed, effects: Sequence[Effect] = (), *, event_id: str | None = None
    ) -> bool:
        try:
            done = await super().complete(claim, effects, event_id=event_id)
        except InboxUnavailable:
            self.outcomes.inc("complete", "unavailable")
            raise
        except LeaseLost:
            self.outcomes.inc("complete", "lease_lost")
            raise
        except EffectFailed:
            self.outcomes.inc("complete", "effect_failed")
            raise
        self.outcomes.inc("complete", "done" if done else "already_done")
        return done
