"""An in-memory broker with RabbitMQ's routing and delivery semantics.

Used by ``codebus demo`` and the unit tests. Same interface as ``bus.rabbitmq``:
topic routing (``*`` one word, ``#`` zero or more), mandatory publishing, prefetch,
ack / nack / requeue with the redelivered flag, a delivery limit, delayed sends and a
dead-letter queue. Messages live only as long as the process.
"""

from __future__ import annotations

import asyncio
import itertools
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from bus.abc import Delivery, Message, OnDelivery
from bus.codec import encode
from bus.errors import BrokerUnavailable, Unroutable
from bus.matching import topic_matches, validate_pattern
from schemas.envelope import Event
from schemas.names import DEFAULT_NAMES, HEADER_DEAD_KIND, HEADER_DEAD_REASON, Names


@dataclass
class _Entry:
    message: Message
    deliveries: int = 0


@dataclass
class _Queue:
    name: str
    ready: deque[_Entry] = field(default_factory=deque)
    unacked: dict[int, _Entry] = field(default_factory=dict)
    consumers: list[_MemoryConsumer] = field(default_factory=list)


class _MemoryDelivery:
    def __init__(self, broker: MemoryBroker, queue: _Queue, tag: int, entry: _Entry, epoch: int):
        self.message = entry.message
        self.queue = queue.name
        self.redelivered = entry.deliveries > 1
        self._broker, self._q, self._tag, self._epoch = broker, queue, tag, epoch
        self.consumer: _MemoryConsumer | None = None

    def _live(self) -> _Entry | None:
        if self._epoch != self._broker._epoch:
            return None  # the "connection" this delivery came on is gone: stale tag
        return self._q.unacked.pop(self._tag, None)

    async def ack(self) -> None:
        if self._live() is not None:
            self._broker._settled(self._q, self.consumer)

    async def nack(self, requeue: bool = True) -> None:
        entry = self._live()
        if entry is None:
            return
        if requeue:
            self._broker._requeue(self._q, entry)
        else:
            self._broker._to_dead(entry.message, "rejected", "nacked without requeue")
        self._broker._settled(self._q, self.consumer)


class _MemoryConsumer:
    def __init__(self, broker: MemoryBroker, queue: _Queue, cb: OnDelivery, prefetch: int):
        self.queue = queue.name
        self._broker, self._q, self._cb, self.prefetch = broker, queue, cb, prefetch
        self.in_flight = 0
        self.active = True
        self.on_cancel: Callable[[], None] | None = None

    @property
    def attached(self) -> bool:
        """Still consuming (not cancelled) on a connected broker."""
        return self.active and self._broker._connected

    async def cancel(self) -> None:
        self.active = False
        if self in self._q.consumers:
            self._q.consumers.remove(self)
        if self.on_cancel is not None:
            self.on_cancel()

    async def close(self) -> None:
        await self.cancel()


class MemoryBroker:
    """In-process broker; see the module docstring. ``dead_letters`` and ``join()``
    help tests."""

    def __init__(self, names: Names = DEFAULT_NAMES, *, delivery_limit: int = 20) -> None:
        self.names = names
        self.delivery_limit = delivery_limit
        self._queues: dict[str, _Queue] = {}
        self._bindings: list[tuple[str, str]] = []
        self._tags = itertools.count(1)
        self._timers: set[asyncio.TimerHandle] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._connected = False
        self._epoch = 0

    # -- lifecycle ----------------------------------------------------------------
    async def connect(self) -> None:
        """Declare the dead-letter queue; there is nothing to connect to."""
        self._connected = True
        self._queue(self.names.dead_letter_queue)

    async def close(self) -> None:
        """Stop delivering, then return unsettled deliveries to their queues."""
        for q in self._queues.values():
            for consumer in q.consumers:
                consumer.active = False
            q.consumers.clear()
        self.disconnect()
        self._connected = False

    def disconnect(self) -> None:
        """Simulate a dropped connection: delivery tasks in flight are cancelled,
        unsettled messages are requeued as redelivered, stale delivery tags become no-ops,
        and consumers resume (like a robust reconnect)."""
        self._epoch += 1
        # Like aiormq closing a channel: the consumer tasks of the old connection are
        # cancelled in the middle of whatever they were doing, and the broker hands the
        # requeued messages out again only after the client has reconnected (here: once
        # those tasks have finished their clean-up).
        cancelled = list(self._tasks)
        for task in cancelled:
            task.cancel()
        for q in self._queues.values():
            for tag in sorted(q.unacked, reverse=True):
                q.ready.appendleft(q.unacked.pop(tag))
            for c in q.consumers:
                c.in_flight = 0
        if cancelled:
            self._spawn(self._redispatch(cancelled))
        else:
            for q in list(self._queues.values()):
                self._dispatch(q)

    async def _redispatch(self, cancelled: list[asyncio.Task[None]]) -> None:
        await asyncio.wait(cancelled)
        for q in list(self._queues.values()):
            self._dispatch(q)

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def ping(self) -> None:
        if not self._connected:
            raise BrokerUnavailable("memory broker is closed")

    # -- topology -----------------------------------------------------------------
    def _queue(self, name: str) -> _Queue:
        q = self._queues.get(name)
        if q is None:
            q = self._queues[name] = _Queue(name)
        return q

    async def declare_queue(self, queue: str, patterns: Sequence[str]) -> None:
        self._queue(queue)
        for pattern in patterns:
            validate_pattern(pattern)
            if (pattern, queue) not in self._bindings:
                self._bindings.append((pattern, queue))

    # -- publishing ---------------------------------------------------------------
    async def publish(self, event: Event, *, headers: Mapping[str, Any] | None = None) -> None:
        await self.ping()
        message = encode(event, headers)
        targets = {q for pattern, q in self._bindings if topic_matches(pattern, event.type)}
        if not targets:
            raise Unroutable(f"no queue is bound for {event.type!r}", event_id=event.id)
        for name in sorted(targets):
            self._enqueue(self._queues[name], _Entry(message))

    async def send(self, queue: str, message: Message, *, delay: float = 0.0) -> None:
        await self.ping()
        if queue not in self._queues:
            raise Unroutable(f"no queue named {queue!r}", event_id=message.message_id)
        q = self._queues[queue]
        if delay <= 0:
            self._enqueue(q, _Entry(message))
            return
        loop = asyncio.get_running_loop()

        def fire() -> None:
            self._timers.discard(handle)
            self._enqueue(q, _Entry(message))

        handle = loop.call_later(delay, fire)
        self._timers.add(handle)

    async def dead_letter(self, message: Message) -> None:
        await self.ping()
        self._enqueue(self._queue(self.names.dead_letter_queue), _Entry(message))

    def _to_dead(self, message: Message, kind: str, reason: str) -> None:
        tagged = message.with_headers(
            **{
                HEADER_DEAD_KIND: message.headers.get(HEADER_DEAD_KIND, kind),
                HEADER_DEAD_REASON: message.headers.get(HEADER_DEAD_REASON, reason),
            }
        )
        self._enqueue(self._queue(self.names.dead_letter_queue), _Entry(tagged))

    # -- consuming ----------------------------------------------------------------
    async def consume(self, queue: str, on_delivery: OnDelivery, *, prefetch: int) -> Any:
        q = self._queue(queue)
        consumer = _MemoryConsumer(self, q, on_delivery, max(1, prefetch))
        q.consumers.append(consumer)
        self._dispatch(q)
        return consumer

    async def tap(self, patterns: Sequence[str], on_delivery: OnDelivery) -> Any:
        name = f"{self.names.prefix}.tap.{next(self._tags)}"
        await self.declare_queue(name, patterns)
        consumer = await self.consume(name, on_delivery, prefetch=100)
        consumer.on_cancel = lambda: self._delete_queue(name)
        return consumer

    def _delete_queue(self, name: str) -> None:
        self._bindings = [(p, q) for p, q in self._bindings if q != name]
        self._queues.pop(name, None)

    async def get(self, queue: str) -> Delivery | None:
        q = self._queue(queue)
        if not q.ready:
            return None
        return self._deliver(q, q.ready.popleft())

    async def purge(self, queue: str) -> int:
        q = self._queue(queue)
        n = len(q.ready)
        q.ready.clear()
        return n

    async def depth(self, queue: str) -> int:
        return len(self._queue(queue).ready)

    # -- internals ----------------------------------------------------------------
    def _deliver(self, q: _Queue, entry: _Entry) -> _MemoryDelivery:
        entry.deliveries += 1
        tag = next(self._tags)
        q.unacked[tag] = entry
        return _MemoryDelivery(self, q, tag, entry, self._epoch)

    def _enqueue(self, q: _Queue, entry: _Entry) -> None:
        q.ready.append(entry)
        self._dispatch(q)

    def _requeue(self, q: _Queue, entry: _Entry) -> None:
        if entry.deliveries >= self.delivery_limit and q.name != self.names.dead_letter_queue:
            self._to_dead(entry.message, "delivery_limit", "delivery limit exceeded")
            return
        q.ready.appendleft(entry)

    def _settled(self, q: _Queue, consumer: _MemoryConsumer | None) -> None:
        if consumer is not None and consumer.in_flight > 0:
            consumer.in_flight -= 1
        self._dispatch(q)

    def _dispatch(self, q: _Queue) -> None:
        while q.ready:
            free = [c for c in q.consumers if c.active and c.in_flight < c.prefetch]
            if not free:
                return
            consumer = min(free, key=lambda c: c.in_flight)
            delivery = self._deliver(q, q.ready.popleft())
            delivery.consumer = consumer
            consumer.in_flight += 1
            self._spawn(consumer._cb(delivery))

    # -- test helpers -------------------------------------------------------------
    @property
    def dead_letters(self) -> list[Message]:
        """Messages waiting in the dead-letter queue."""
        return [e.message for e in self._queue(self.names.dead_letter_queue).ready]

    def idle(self) -> bool:
        """No message is ready, in flight or delayed (dead letters do not count)."""
        dead = self.names.dead_letter_queue
        busy = any((q.ready or q.unacked) for n, q in self._queues.items() if n != dead)
        return not busy and not self._timers and not self._tasks

    async def join(self, timeout: float = 10.0) -> None:
        """Wait until :meth:`idle`; raises TimeoutError otherwise."""
        async with asyncio.timeout(timeout):
            while not self.idle():
                await asyncio.sleep(0.005)
