"""What every gateway route needs, held once per application under one ``AppKey``."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from bus.abc import Broker
from bus.errors import BrokerUnavailable, PublishError, Unroutable
from gateway.metrics import GatewayMetrics
from gateway.problems import unavailable
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
    #: Longest wait for one broker confirm before answering 503. A confirm arriving
    #: later means a retry republishes the same event; subscribers' inboxes drop it.
    publish_timeout: float = 10.0
    replay: ReplayGuard = field(init=False)

    def __post_init__(self) -> None:
        self.replay = ReplayGuard(self.redis, self.names)

    async def publish(self, events: Sequence[Event]) -> None:
        """Publish each event and wait for its confirm; any failure is a 503.

        Events go out one by one: if one fails, the sender retries the whole request and
        the deterministic ids let subscribers drop the ones already delivered.
        """
        for event in events:
            try:
                async with asyncio.timeout(self.publish_timeout):
                    await self.broker.publish(event)
            except TimeoutError as exc:
                raise unavailable("broker did not confirm the event in time") from exc
            except Unroutable as exc:
                # No subscriber is bound yet (workers not started): not accepted, retry.
                raise unavailable(f"no subscriber is bound for {event.type!r}") from exc
            except (BrokerUnavailable, PublishError) as exc:
                raise unavailable(f"broker did not confirm the event: {exc}") from exc
            except (ConnectionError, OSError) as exc:
                raise unavailable(f"broker connection failed: {type(exc).__name__}") from exc
            self.metrics.published.labels(type=event.type).inc()


STATE: web.AppKey[GatewayState] = web.AppKey("codebus_gateway_state", GatewayState)
