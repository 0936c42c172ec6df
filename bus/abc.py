"""Interfaces of the messaging runtime. Implementations live in ``bus.memory`` and
``bus.rabbitmq``; this module imports neither."""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from schemas.envelope import Event
from schemas.names import Names

CONTENT_TYPE = "application/cloudevents+json"


@dataclass(frozen=True)
class Message:
    """What travels through a queue: the encoded envelope plus AMQP headers."""

    body: bytes
    routing_key: str
    message_id: str | None = None
    headers: Mapping[str, Any] = field(default_factory=dict)
    content_type: str = CONTENT_TYPE

    def with_headers(self, **updates: Any) -> Message:
        """A copy with some headers replaced (``None`` removes a header)."""
        merged = {**self.headers, **updates}
        merged = {k: v for k, v in merged.items() if v is not None}
        return Message(self.body, self.routing_key, self.message_id, merged, self.content_type)


@runtime_checkable
class Delivery(Protocol):
    """One delivery of a message to a consumer; settle it exactly once."""

    message: Message
    queue: str
    redelivered: bool

    async def ack(self) -> None:
        """Remove the message from the queue."""

    async def nack(self, requeue: bool = True) -> None:
        """Give the message back (``requeue``) or drop it to the queue's dead-letter exchange."""


OnDelivery = Callable[[Delivery], Coroutine[Any, Any, None]]


@runtime_checkable
class Consumer(Protocol):
    """A running consumer on one queue."""

    queue: str

    async def cancel(self) -> None:
        """Stop receiving new deliveries; deliveries already handed out stay unsettled."""

    async def close(self) -> None:
        """Release the consumer; every delivery still unsettled returns to the queue."""


@runtime_checkable
class Broker(Protocol):
    """A topic-routing broker with confirms, delayed redelivery and a dead-letter queue.

    ``bus.rabbitmq.RabbitBroker`` and ``bus.memory.MemoryBroker`` implement it with the
    same routing and delivery semantics; the shared test-suite runs on both.
    """

    names: Names

    async def connect(self) -> None:
        """Open connections and declare the fixed topology (exchanges, delay, dead-letter)."""

    async def close(self) -> None:
        """Close connections; unsettled deliveries return to their queues."""

    async def ping(self) -> None:
        """Raise :class:`bus.errors.BrokerUnavailable` unless the broker answers."""

    async def declare_queue(self, queue: str, patterns: Sequence[str]) -> None:
        """Declare a durable subscription queue bound to the events exchange with
        ``patterns`` and to the retry exchange under its own name."""

    async def publish(self, event: Event, *, headers: Mapping[str, Any] | None = None) -> None:
        """Publish to the events exchange (routing key = type), persistent and mandatory,
        and wait for the broker's confirm. Raises ``Unroutable`` when no queue is bound."""

    async def send(self, queue: str, message: Message, *, delay: float = 0.0) -> None:
        """Put ``message`` into ``queue`` (after ``delay`` seconds), confirmed."""

    async def dead_letter(self, message: Message) -> None:
        """Put ``message`` into the dead-letter queue, confirmed."""

    async def consume(self, queue: str, on_delivery: OnDelivery, *, prefetch: int) -> Consumer:
        """Deliver messages of ``queue`` to ``on_delivery``, at most ``prefetch`` unsettled."""

    async def tap(self, patterns: Sequence[str], on_delivery: OnDelivery) -> Consumer:
        """Observe events matching ``patterns`` on a private, transient queue that is
        deleted with the consumer (``codebus tail``). Never affects other queues."""

    async def get(self, queue: str) -> Delivery | None:
        """Take one message for inspection (manual settle), or None if the queue is empty."""

    async def purge(self, queue: str) -> int:
        """Drop every ready message of ``queue``; returns how many."""

    async def depth(self, queue: str) -> int:
        """Ready messages in ``queue``."""
