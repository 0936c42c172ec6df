"""The consuming side of the RabbitMQ broker: deliveries, their acks, and the queue
class that hands them over.

Consumers are registered on aiormq's channel (aio-pika's protocol layer) through
:class:`LeanQueue`, a ``RobustQueue`` that aio-pika restores after a reconnect like any
robust consumer, but whose callback receives aiormq's ``DeliveredMessage`` as is:
aio-pika's ``IncomingMessage`` wrapper and the second task it spawns per message cost
more than the rest of a delivery's decoding (bench/consumer_bench.py). Acks go through
:class:`bus.acks.ChannelAcks`.
"""

from __future__ import annotations

from typing import Any

from aio_pika.abc import AbstractIncomingMessage, ConsumerTag
from aio_pika.robust_queue import RobustQueue
from aiormq.abc import DeliveredMessage

from bus.abc import Message
from bus.acks import ChannelAcks


class RabbitDelivery:
    """One delivery; settled through its channel's :class:`ChannelAcks`."""

    __slots__ = ("_acks", "_tag", "message", "queue", "redelivered")

    def __init__(
        self, message: Message, queue: str, redelivered: bool, tag: int, acks: ChannelAcks
    ) -> None:
        self.message = message
        self.queue = queue
        self.redelivered = redelivered
        self._tag = tag
        self._acks = acks

    async def ack(self) -> None:
        # Recorded now, written with the others of this loop turn (bus.acks). If the
        # channel dies first, the broker requeues the message and the inbox makes the
        # redelivery a no-op.
        self._acks.ack(self._tag)

    async def nack(self, requeue: bool = True) -> None:
        self._acks.nack(self._tag, requeue=requeue)


class AckTracker:
    """The :class:`ChannelAcks` of the channel deliveries arrive on; replaced when the
    robust channel reopens (delivery tags restart; older deliveries keep theirs, and
    settling them fails harmlessly on the closed channel)."""

    def __init__(self) -> None:
        self._current: ChannelAcks | None = None

    def acks(self, channel: Any) -> ChannelAcks:
        current = self._current
        if current is None or current.channel is not channel:
            current = self._current = ChannelAcks(channel)
        return current

    async def drain(self) -> None:
        """Wait until every recorded ack and nack is written (before closing)."""
        if self._current is not None:
            await self._current.drain()

    def delivered(self, dm: DeliveredMessage, queue: str) -> RabbitDelivery:
        """A delivery made of aiormq's message (the consumer path)."""
        props = dm.header.properties
        message = Message(
            body=dm.body,
            routing_key=dm.routing_key or "",
            message_id=props.message_id,
            headers=props.headers or {},
            content_type=props.content_type or "",
        )
        return RabbitDelivery(
            message, queue, bool(dm.redelivered), dm.delivery_tag or 0, self.acks(dm.channel)
        )

    def fetched(self, incoming: AbstractIncomingMessage, queue: str) -> RabbitDelivery:
        """A delivery made of aio-pika's message (``basic.get``)."""
        message = Message(
            body=incoming.body,
            routing_key=incoming.routing_key or "",
            message_id=incoming.message_id,
            headers=dict(incoming.headers or {}),
            content_type=incoming.content_type or "",
        )
        return RabbitDelivery(
            message,
            queue,
            bool(incoming.redelivered),
            incoming.delivery_tag or 0,
            self.acks(incoming.channel),
        )


class LeanQueue(RobustQueue):
    """A robust queue whose consumer callbacks take aiormq's ``DeliveredMessage``.

    Same registration and restore bookkeeping as ``RobustQueue.consume``; only the
    wrapper around the callback is left out. Install it on a channel with
    ``channel.QUEUE_CLASS = LeanQueue`` before declaring the queue.
    """

    async def consume(  # type: ignore[override]
        self,
        callback: Any,
        no_ack: bool = False,
        exclusive: bool = False,
        arguments: Any = None,
        consumer_tag: ConsumerTag | None = None,
        timeout: Any = None,
        robust: bool = True,
    ) -> ConsumerTag:
        channel = await self.channel.get_underlay_channel()
        result = await channel.basic_consume(
            queue=self.name,
            consumer_callback=callback,
            exclusive=exclusive,
            no_ack=no_ack,
            arguments=arguments,
            consumer_tag=consumer_tag,
            timeout=timeout,
        )
        if result.consumer_tag is None:
            raise RuntimeError("the broker returned no consumer tag")
        if robust:
            self._consumers[result.consumer_tag] = dict(
                callback=callback, no_ack=no_ack, exclusive=exclusive, arguments=arguments
            )
        return result.consumer_tag
