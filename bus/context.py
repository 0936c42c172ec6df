"""What a handler gets besides its payload: the envelope, a logger, its dependencies
(typed: ``toolbox``, ``redis``, ``names``, ``unit_deps(Type)``), and ``publish`` for
follow-up events with deterministic ids."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, TypeVar

from pydantic import BaseModel

from bus.abc import Broker
from bus.codec import encode
from bus.errors import Reject
from schemas.envelope import Event, child_event_id
from schemas.errors import UnknownEventType
from schemas.names import Names
from schemas.tool_calls import ToolCaller

if TYPE_CHECKING:
    from redis.asyncio import Redis

    from bus.effects import Effect

T = TypeVar("T")


def child_traceparent(parent: str | None, child_id: str) -> str | None:
    """Same trace, a new span id derived from the child's id (stable across redeliveries)."""
    if not parent:
        return None
    version, trace_id, _span, flags = parent.split("-")
    span = hashlib.sha256(child_id.encode()).hexdigest()[:16]
    return f"{version}-{trace_id}-{span}-{flags}"


class HandlerContext:
    """Per-delivery context handed to a handler."""

    def __init__(
        self,
        *,
        event: Event,
        subscription: str,
        attempt: int,
        broker: Broker,
        deps: Mapping[str, Any],
        logger: logging.Logger,
        source: str,
    ) -> None:
        self.event = event
        self.subscription = subscription
        self.attempt = attempt
        self.deps = deps
        self._base_logger = logger
        self._logger: logging.LoggerAdapter[logging.Logger] | None = None
        self.effects: list[Effect] = []
        self._broker = broker
        self._source = source
        self._seq: dict[str, int] = {}

    @property
    def toolbox(self) -> ToolCaller:
        """The unit's tools, restricted to its role; ``call_tool`` returns the tool's
        result model (``docker.docker_build`` -> ``DockerBuildResult``)."""
        return self._dep("toolbox")  # type: ignore[no-any-return]

    @property
    def redis(self) -> Redis:
        """The worker's Redis client (``redis.asyncio.Redis``)."""
        return self._dep("redis")  # type: ignore[no-any-return]

    @property
    def names(self) -> Names:
        """Every queue, exchange and Redis key name of this deployment."""
        return self._dep("names")  # type: ignore[no-any-return]

    def unit_deps(self, kind: type[T]) -> T:
        """The object the unit's dependency factory made, checked to be a ``kind``."""
        deps = self._dep("unit_deps")
        if not isinstance(deps, kind):
            raise TypeError(
                f"the unit's dependencies are a {type(deps).__name__}, not a {kind.__name__}"
            )
        return deps

    def _dep(self, key: str) -> Any:
        try:
            return self.deps[key]
        except KeyError:
            raise LookupError(
                f"subscription {self.subscription}: no {key!r} dependency in this worker"
            ) from None

    @property
    def logger(self) -> logging.LoggerAdapter[logging.Logger]:
        """A logger whose records carry the event id, type and subscription."""
        if self._logger is None:
            extra = {
                "event_id": self.event.id,
                "event_type": self.event.type,
                "subscription": self.subscription,
            }
            self._logger = logging.LoggerAdapter(self._base_logger, extra)
        return self._logger

    async def publish(
        self,
        type: str,
        data: BaseModel | dict[str, Any],
        *,
        subject: str | None = None,
        id: str | None = None,
    ) -> Event:
        """Publish a follow-up event and wait for the broker's confirm.

        It inherits the correlation id, names this event as its cause and gets an id
        derived from (cause, subscription, type, n-th publish of that type), so a
        redelivered event republishes identical ids that downstream inboxes drop.
        ``id`` replaces that derivation for state machines whose own record decides
        what is published (a flow's outbox): the same record gives the same id."""
        child = self._child(type, data, subject, id)
        await self._broker.publish(child)
        return child

    async def send(
        self,
        subscription: str,
        type: str,
        data: BaseModel | dict[str, Any],
        *,
        id: str,
        delay: float = 0.0,
    ) -> Event:
        """Put an event into one subscription's queue only (not to every subscriber),
        after ``delay`` seconds through the delay tiers: durable timers and wake-ups."""
        child = self._child(type, data, None, id)
        queue = self._broker.names.subscription_queue(subscription)
        # With tracing on (bus.tracing.TracingBroker) a send is a publish too: a
        # producer span whose traceparent the event carries, so the delivery that runs
        # it (a step, a timer's wake-up) has a parent in the trace.
        producer_span = getattr(self._broker, "producer_span", None)
        if producer_span is None:
            await self._broker.send(queue, encode(child), delay=delay)
            return child
        with producer_span(child) as stamped:
            await self._broker.send(queue, encode(stamped), delay=delay)
        return stamped

    def _child(
        self, type: str, data: BaseModel | dict[str, Any], subject: str | None, id: str | None
    ) -> Event:
        from schemas.events import validate_payload  # the catalogue, built on first publish

        payload = data.model_dump(mode="json") if isinstance(data, BaseModel) else dict(data)
        try:
            validate_payload(type, payload)
        except UnknownEventType as exc:
            # Publishing it again will not make the type known: dead-letter at once.
            raise Reject(f"cannot publish {type!r}: no installed package declares it") from exc
        if id is None:
            seq = self._seq.get(type, 0)
            self._seq[type] = seq + 1
            id = child_event_id(self.event.id, self.subscription, type, seq)
        child_id = id
        return Event(
            id=child_id,
            source=self._source,
            type=type,
            subject=subject if subject is not None else self.event.subject,
            data=payload,
            correlationid=self.event.correlationid or self.event.id,
            causationid=self.event.id,
            traceparent=child_traceparent(self.event.traceparent, child_id),
        )

    def on_commit(self, effect: Effect) -> None:
        """Register a Redis write (a function of the transaction pipeline) that is applied
        atomically with this event's done-mark: it happens exactly once."""
        self.effects.append(effect)
