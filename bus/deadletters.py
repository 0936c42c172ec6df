"""Inspect, replay and purge the dead-letter queue (``codebus dlq ...``)."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from bus.abc import Broker, Delivery, Message
from schemas.names import (
    HEADER_ATTEMPT,
    HEADER_DEAD_AT,
    HEADER_DEAD_KIND,
    HEADER_DEAD_REASON,
    HEADER_ORIGIN_QUEUE,
)


@dataclass(frozen=True)
class DeadLetterInfo:
    """A dead-lettered message as people read it."""

    message_id: str | None
    event_type: str
    kind: str
    reason: str
    queue: str | None
    attempts: int | None
    dead_at: str | None
    body: bytes

    def as_dict(self, with_body: bool = False) -> dict[str, Any]:
        """JSON-friendly form; the body decoded when it is JSON."""
        out: dict[str, Any] = {
            "id": self.message_id,
            "type": self.event_type,
            "kind": self.kind,
            "reason": self.reason,
            "queue": self.queue,
            "attempts": self.attempts,
            "dead_at": self.dead_at,
        }
        if with_body:
            try:
                out["event"] = json.loads(self.body)
            except ValueError:
                out["event"] = self.body.decode("utf-8", "replace")
        return out


def _first_death_queue(headers: dict[str, Any]) -> str | None:
    deaths = headers.get("x-death") or []
    if deaths and isinstance(deaths, list) and isinstance(deaths[0], dict):
        q = deaths[0].get("queue")
        return q.decode() if isinstance(q, bytes) else q
    return None


def info(message: Message) -> DeadLetterInfo:
    """Read the reason headers the runtime (or the broker's delivery limit) attached."""
    h = dict(message.headers)
    broker_reason = h.get("x-first-death-reason")
    kind = h.get(HEADER_DEAD_KIND) or ("delivery_limit" if broker_reason else "unknown")
    reason = h.get(HEADER_DEAD_REASON) or (
        f"broker dead-lettered it ({broker_reason})" if broker_reason else "no reason recorded"
    )
    attempts = h.get(HEADER_ATTEMPT)
    return DeadLetterInfo(
        message_id=message.message_id,
        event_type=message.routing_key,
        kind=str(kind),
        reason=str(reason),
        queue=h.get(HEADER_ORIGIN_QUEUE) or _first_death_queue(h),
        attempts=int(attempts) if attempts is not None else None,
        dead_at=h.get(HEADER_DEAD_AT),
        body=message.body,
    )


#: Most dead letters a tail-requeueing queue is cycled through to keep its order (below).
MAX_CYCLE = 100_000


def requeues_at_tail(broker: Broker) -> bool:
    """Where a nacked (requeued) message goes back: RabbitMQ quorum queues put it at the
    TAIL, classic queues and the in-memory broker back at the HEAD (its old position).

    This was the root cause of ``codebus dlq list`` flipping the queue's order on every
    call: the taken messages were put back in reverse, which restores the order on a
    head-requeueing queue and reverses it on a quorum queue."""
    return getattr(broker, "queue_type", None) == "quorum"


async def _take_all(broker: Broker, limit: int) -> list[Delivery]:
    taken: list[Delivery] = []
    while len(taken) < limit:
        d = await broker.get(broker.names.dead_letter_queue)
        if d is None:
            break
        taken.append(d)
    return taken


async def _take(broker: Broker, limit: int) -> list[Delivery]:
    """Take up to ``limit`` dead letters, oldest first. On a tail-requeueing queue the
    whole queue is taken (up to :data:`MAX_CYCLE`): putting back only the first
    ``limit`` would move them behind the rest."""
    return await _take_all(broker, max(limit, MAX_CYCLE) if requeues_at_tail(broker) else limit)


async def _put_back(broker: Broker, taken: list[Delivery]) -> None:
    """Requeue ``taken`` (oldest first) so that the queue keeps its order: in order at the
    tail of an emptied quorum queue, in reverse at the head of the others."""
    for d in taken if requeues_at_tail(broker) else reversed(taken):
        await d.nack(requeue=True)


async def list_dead_letters(broker: Broker, limit: int = 100) -> list[DeadLetterInfo]:
    """Up to ``limit`` dead letters in queue order (oldest first); they stay in the
    queue, in the same order, on both brokers and both queue types."""
    taken = await _take(broker, limit)
    try:
        return [info(d.message) for d in taken[:limit]]
    finally:
        await _put_back(broker, taken)


async def replay(
    broker: Broker,
    *,
    select: Callable[[DeadLetterInfo], bool] = lambda _: True,
    limit: int = 1000,
) -> list[DeadLetterInfo]:
    """Send selected dead letters back to the queue they died in, attempt count reset, in
    queue order (oldest first; the order of the returned list). Each is removed from the
    dead-letter queue only after the copy is confirmed; the others keep their order."""
    taken = await _take(broker, limit)
    replayed: list[DeadLetterInfo] = []
    keep: list[Delivery] = []
    for index, d in enumerate(taken):
        dl = info(d.message)
        if index >= limit or not select(dl) or not dl.queue:
            keep.append(d)
            continue
        fresh = d.message.with_headers(
            **{
                HEADER_ATTEMPT: None,
                HEADER_DEAD_KIND: None,
                HEADER_DEAD_REASON: None,
                HEADER_DEAD_AT: None,
                HEADER_ORIGIN_QUEUE: None,
                "x-death": None,
                "x-first-death-reason": None,
                "x-first-death-queue": None,
                "x-first-death-exchange": None,
                "x-delivery-count": None,
            }
        )
        await broker.send(dl.queue, fresh)
        await d.ack()
        replayed.append(dl)
    await _put_back(broker, keep)
    return replayed


async def purge(broker: Broker) -> int:
    """Delete every dead letter; returns how many."""
    return await broker.purge(broker.names.dead_letter_queue)
