"""What every gateway route needs, held once per application under one ``AppKey``."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from bus.abc import Broker
from bus.errors import BrokerUnavailable, PublishError, PublishOutcomeUnknown, Unroutable
from gateway.metrics import GatewayMetrics
from gateway.problems import outcome_unknown, unavailable
from gateway.replay import ReplayGuard
from schemas.envelope import Event
from schemas.gateway_config import GatewayConfig
from schemas.names import Names


@dataclass
class GatewayState:
    """Configuration, clients and metrics shared by the routes of one app."""

    config: GatewayConfig
    broker: Broker
    redis: Any
    names: Names
    metrics: GatewayMetrics = field(default_factory=GatewayMetrics)
    clock: Callable[[], float] = time.time
    #: Longest wait for one broker confirm before answering 503 ``outcome_unknown``.
    #: A confirm arriving later means the event was taken; the sender's retry
    #: republishes the same id and subscribers' inboxes drop the copy.
    publish_timeout: float = 10.0
    #: Seconds a claim stays "pending" if its request never finishes (process killed
    #: mid-publish); default: well past the publish timeout.
    pending_claim_ttl: int | None = None
    replay: ReplayGuard = field(init=False)

    def __post_init__(self) -> None:
        pending = self.pending_claim_ttl or int(3 * self.publish_timeout) + 30
        self.replay = ReplayGuard(self.redis, pending_ttl=pending)

    async def publish(self, events: Sequence[Event]) -> None:
        """Publish each event and wait for its confirm; any failure is a 503.

        Two kinds of 503 (issue 8, C): ``unavailable`` when nothing of this request can
        have been published (broker unreachable before sending, nack, unroutable), and
        ``outcome_unknown`` when an event was sent but its confirm never came. Events go
        out one by one; after a failure the sender retries the whole request and the
        deterministic ids let subscribers drop the ones already delivered.
        """
        ids = [e.id for e in events]
        sent_before = False
        for event in events:
            try:
                async with asyncio.timeout(self.publish_timeout):
                    await self.broker.publish(event)
            except (TimeoutError, PublishOutcomeUnknown, ConnectionError, OSError) as exc:
                # Sent (or possibly sent) without a confirm. A raw connection error here
                # cannot tell whether the frame left, so it counts as unknown too.
                self.metrics.outcome_unknown.inc()
                raise outcome_unknown(
                    f"event {event.id} was sent but the broker did not confirm it "
                    f"({_why(exc)}); it may still be delivered. Retry the same request "
                    "(same Idempotency-Key, webhook id or delivery): it maps to the same "
                    "event ids, which subscribers deduplicate",
                    ids=ids,
                ) from exc
            except (Unroutable, BrokerUnavailable, PublishError) as exc:
                detail = (
                    f"no subscriber is bound for {event.type!r}"
                    if isinstance(exc, Unroutable)
                    else f"the broker did not take event {event.id}: {_why(exc)}"
                )
                if sent_before:
                    # Earlier events of this request were confirmed: the request as a
                    # whole is in doubt, and a retry is still safe for the same reason.
                    raise outcome_unknown(
                        detail + "; earlier events of this request were published", ids=ids
                    ) from exc
                raise unavailable(detail + "; nothing was published", ids=ids) from exc
            sent_before = True
            self.metrics.published.labels(type=event.type).inc()


def _why(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "no confirm in time"
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


STATE: web.AppKey[GatewayState] = web.AppKey("codebus_gateway_state", GatewayState)
