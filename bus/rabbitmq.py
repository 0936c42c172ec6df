"""The RabbitMQ broker, on aio-pika.

- A robust connection with heartbeats: channels, QoS, queues, bindings and consumers
  are restored after a reconnect.
- Every publish is persistent, ``mandatory`` (an unroutable message is an error, not a
  silent drop) and waits for the publisher confirm.
- Subscription queues are durable, quorum by default (with a delivery limit and
  at-least-once dead-lettering), classic on request.
- Acks are coalesced per channel (``bus.acks``): one ``multiple`` ack per event-loop
  turn for the settled run of delivery tags, single acks for the rest.
- Delayed redelivery: a headers exchange routes a message by its delay tier to a
  queue with no consumers; the per-message TTL expires and the queue dead-letters it
  into the default exchange, which routes it back to the owning queue by name (its
  routing key). Immediate sends go through the direct retry exchange.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections.abc import Mapping, Sequence
from typing import Any, Literal
from urllib.parse import unquote, urlsplit

import aio_pika
import aiormq
from aio_pika.abc import (
    AbstractChannel,
    AbstractExchange,
    AbstractRobustConnection,
    ExchangeType,
)
from aiormq.abc import DeliveredMessage

from bus.abc import Delivery, Message, OnDelivery
from bus.codec import encode
from bus.errors import (
    BrokerUnavailable,
    BusError,
    PublishNacked,
    PublishOutcomeUnknown,
    Unroutable,
    describe,
)
from bus.matching import validate_pattern
from bus.rabbitmq_delivery import AckTracker, LeanQueue
from bus.rabbitmq_urls import MultiNodeConnection, parse_amqp_urls, rotations
from schemas.envelope import Event
from schemas.names import (
    DEFAULT_NAMES,
    HEADER_DELAY_TIER,
    MAX_DELAY_TIER,
    MIN_DELAY_TIER,
    Names,
    delay_tier,
)

log = logging.getLogger("codebus.bus.rabbitmq")

QueueType = Literal["quorum", "classic"]

_CONNECTION_ERRORS: tuple[type[BaseException], ...] = (
    aiormq.exceptions.AMQPConnectionError,
    aiormq.exceptions.ChannelInvalidStateError,
    ConnectionError,
    OSError,
    asyncio.TimeoutError,
    RuntimeError,  # aio-pika raises it for operations on a closed channel
)

#: Raised before the publish frames are queued (the channel is closed or reopening
#: after a connection loss): the broker has not seen the message.
_NOT_SENT: tuple[type[BaseException], ...] = (
    aiormq.exceptions.ChannelInvalidStateError,
    RuntimeError,  # aio-pika: operation on a closed (robust, reopening) channel
)
#: Raised once the frames may have been queued: a confirm timeout (a connection blocked
#: by a resource alarm keeps the frames and sends them later), or the connection or
#: channel lost while waiting for the confirm. The broker may have taken the message.
_OUTCOME_UNKNOWN: tuple[type[BaseException], ...] = (
    asyncio.TimeoutError,
    aiormq.exceptions.AMQPError,
    ConnectionError,
    OSError,
)

#: The dead-letter queue's own delivery limit. Listing dead letters takes them with
#: basic.get and requeues them, which counts as a delivery; RabbitMQ 4.x gives quorum
#: queues a default limit of 20 and DROPS messages past it when the queue has no
#: dead-letter exchange (this one has none). An explicit, unreachable limit keeps
#: ``codebus dlq list`` from ever destroying what it lists.
DEAD_LETTER_DELIVERY_LIMIT = 2**31 - 1


def safe_url(url: str) -> str:
    """The URL (or comma-separated URLs) without passwords, for messages and logs."""
    return ",".join(_safe_one(u.strip()) for u in url.split(","))


def _safe_one(url: str) -> str:
    parts = urlsplit(url)
    host = parts.hostname or "?"
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}{parts.path or '/'}"


def _mismatch(what: str, exc: BaseException) -> str:
    return (
        f"{what} exists on the broker with other arguments ({exc}); make "
        f"CODEBUS_QUEUE_TYPE / CODEBUS_DELIVERY_LIMIT match it, or migrate or delete the "
        f"queues (see docs/operations.md)"
    )


class _RabbitConsumer:
    def __init__(
        self, queue: str, channel: AbstractChannel, tag: str, q: Any, tracker: AckTracker
    ) -> None:
        self.queue = queue
        self._channel, self._tag, self._q, self._tracker = channel, tag, q, tracker

    @property
    def attached(self) -> bool:
        """The consumer's channel is open (False while a robust reconnect is pending)."""
        return not self._channel.is_closed

    async def cancel(self) -> None:
        try:
            await self._q.cancel(self._tag)
        except _CONNECTION_ERRORS as exc:
            log.debug("cancel on a closed channel: %s", exc)

    async def close(self) -> None:
        # Closing the channel is what reliably returns unsettled messages: after a
        # basic.cancel a quorum queue may still hand a requeued message to this channel.
        # Acks recorded before are written first.
        await self._tracker.drain()
        try:
            await self._channel.close()
        except _CONNECTION_ERRORS as exc:
            log.debug("close of a closed channel: %s", exc)


class RabbitBroker:
    """:class:`bus.abc.Broker` over RabbitMQ. See the module docstring."""

    def __init__(
        self,
        url: str,
        *,
        names: Names = DEFAULT_NAMES,
        queue_type: QueueType = "quorum",
        delivery_limit: int = 20,
        heartbeat: int = 10,
        connect_timeout: float = 10.0,
        publish_timeout: float = 15.0,
        connection_name: str = "codebus",
        reconnect_interval: float = 2.0,
        shuffle_urls: bool = False,
        quorum_initial_group_size: int | None = None,
    ) -> None:
        self.url = url
        self.urls = parse_amqp_urls(url)
        self.shuffle_urls = shuffle_urls
        self.quorum_initial_group_size = quorum_initial_group_size
        self.names = names
        self.queue_type = queue_type
        self.delivery_limit = delivery_limit
        self.heartbeat = heartbeat
        self.connect_timeout = connect_timeout
        self.publish_timeout = publish_timeout
        self.connection_name = connection_name
        self.reconnect_interval = reconnect_interval
        self._conn: AbstractRobustConnection | None = None
        self._pub: AbstractChannel | None = None
        self._admin: AbstractChannel | None = None
        self._fetched = AckTracker()  # acks of messages taken with get() (admin channel)
        self._trackers: weakref.WeakSet[AckTracker] = weakref.WeakSet()  # consumers' acks
        self._exchanges: dict[str, AbstractExchange] = {}
        self._queue_args: dict[str, dict[str, Any]] = {}

    # -- lifecycle ----------------------------------------------------------------
    async def connect(self) -> None:
        """Connect, open the publishing channel (confirms on) and declare the fixed
        topology. Raises :class:`BrokerUnavailable` with a one-line reason."""
        try:
            self._conn = await self._connect_first()
            self._pub = await self._conn.channel(publisher_confirms=True, on_return_raises=True)
            self._admin = await self._conn.channel(publisher_confirms=False)
            await self._declare_fixed(self._pub)
        except aiormq.exceptions.ChannelPreconditionFailed as exc:
            await self.close()
            raise BusError(_mismatch("the fixed topology", exc)) from exc
        except aiormq.exceptions.ProbableAuthenticationError as exc:
            raise BrokerUnavailable(f"RabbitMQ at {safe_url(self.url)} refused the login") from exc
        except aiormq.exceptions.InvalidFrameError as exc:
            # The broker answers Connection.Open with Connection.Close when the vhost does
            # not exist or the user may not use it; aiormq drops the reply text.
            vhost = unquote(urlsplit(self.urls[0]).path[1:]) or "/"
            raise BrokerUnavailable(
                f"RabbitMQ at {safe_url(self.url)} refused to open vhost {vhost!r}: it does"
                " not exist or the user has no permission on it (check CODEBUS_AMQP_URL)"
            ) from exc
        except _CONNECTION_ERRORS as exc:
            raise BrokerUnavailable(
                f"cannot reach RabbitMQ at {safe_url(self.url)}: {describe(exc)}"
            ) from exc

    async def _connect_first(self) -> AbstractRobustConnection:
        """A robust connection to the first node (in order, or shuffled) that accepts
        one; the last node's error when none does."""
        last: BaseException | None = None
        for order in rotations(self.urls, shuffle=self.shuffle_urls):
            conn = MultiNodeConnection(
                order,
                heartbeat=self.heartbeat,
                reconnect_interval=self.reconnect_interval,
                client_properties={"connection_name": self.connection_name},
            )
            try:
                await conn.connect(timeout=self.connect_timeout)
                return conn
            except aiormq.exceptions.ProbableAuthenticationError:
                raise  # the same credentials on every node: no point trying the next
            except _CONNECTION_ERRORS as exc:
                last = exc
                if len(self.urls) > 1:
                    log.warning("RabbitMQ at %s: %s", safe_url(order[0]), describe(exc))
                await conn.close()
        assert last is not None
        raise last

    @property
    def node_url(self) -> str:
        """The URL (without password) of the node the connection is on."""
        conn = self._conn
        if isinstance(conn, MultiNodeConnection):
            return safe_url(str(conn.node_url))
        return safe_url(self.urls[0])

    async def close(self) -> None:
        if self._conn is not None:
            for tracker in [self._fetched, *self._trackers]:
                await tracker.drain()  # settlements recorded before closing are written
            await self._conn.close()
            self._conn = None

    async def ping(self) -> None:
        """Raise :class:`BrokerUnavailable` unless the broker answers and the connection
        is not blocked by a resource alarm (RabbitMQ's ``connection.blocked``: while it
        lasts, publishes - retry and dead-letter copies included - cannot be confirmed)."""
        if self._conn is None or self._conn.is_closed or self._admin is None:
            raise BrokerUnavailable(f"not connected to RabbitMQ at {safe_url(self.url)}")
        if await self.blocked():
            raise BrokerUnavailable(
                f"RabbitMQ at {safe_url(self.url)} blocked this connection (resource alarm: "
                f"memory or disk); publishes wait until it clears"
            )
        try:
            await asyncio.wait_for(
                self._admin.declare_exchange(self.names.events_exchange, passive=True), 5
            )
        except _CONNECTION_ERRORS as exc:
            raise BrokerUnavailable(f"RabbitMQ at {safe_url(self.url)} does not answer") from exc

    async def blocked(self) -> bool:
        """True while the broker has blocked the (open) connection. aiormq tracks the
        connection.blocked / unblocked notifications behind ``ready()``, which waits
        for both connected and unblocked."""
        transport = self._conn.transport if self._conn is not None else None
        amqp: Any = transport.connection if transport is not None else None
        if amqp is None or not amqp.connected.is_set():
            return False
        try:
            await asyncio.wait_for(asyncio.shield(amqp.ready()), 0.05)
        except TimeoutError:
            return True
        return False

    # -- topology -----------------------------------------------------------------
    def _durable_queue_args(self, dead_letter_exchange: str | None) -> dict[str, Any]:
        args: dict[str, Any] = {}
        if dead_letter_exchange:
            args["x-dead-letter-exchange"] = dead_letter_exchange
        if self.queue_type == "quorum":
            args["x-queue-type"] = "quorum"
            if self.quorum_initial_group_size is not None:
                args["x-quorum-initial-group-size"] = self.quorum_initial_group_size
            if dead_letter_exchange:
                # at-least-once dead-lettering needs reject-publish overflow.
                args["x-dead-letter-strategy"] = "at-least-once"
                args["x-overflow"] = "reject-publish"
        return args

    async def _declare_fixed(self, ch: AbstractChannel) -> None:
        n = self.names
        kinds = {
            n.events_exchange: ExchangeType.TOPIC,
            n.retry_exchange: ExchangeType.DIRECT,
            n.delay_exchange: ExchangeType.HEADERS,
            n.dead_exchange: ExchangeType.FANOUT,
        }
        for name, kind in kinds.items():
            self._exchanges[name] = await ch.declare_exchange(name, kind, durable=True)
        dead = await ch.declare_queue(
            n.dead_letter_queue, durable=True, arguments=self.dead_letter_queue_args()
        )
        await dead.bind(self._exchanges[n.dead_exchange], routing_key="")
        for tier in range(MIN_DELAY_TIER, MAX_DELAY_TIER + 1):
            q = await ch.declare_queue(
                n.delay_queue(tier), durable=True, arguments=self.delay_queue_args()
            )
            await q.bind(
                self._exchanges[n.delay_exchange],
                arguments={"x-match": "all", HEADER_DELAY_TIER: str(tier)},
            )

    def delay_queue_args(self) -> dict[str, Any]:
        """Arguments of the delay queues: expired copies are dead-lettered to the DEFAULT
        exchange, which routes by queue name - the copy's routing key is its owning
        queue - and, unlike a declared exchange, always exists. A durable exchange
        declared shortly before a broker crash can be missing after the restart (seen on
        RabbitMQ 3.10 after kill -9) while the quorum queues survive; at-least-once
        dead-lettering then parks the expired copies until its retry timer
        (``dead_letter_worker_publisher_confirm_timeout``, 3 minutes) fires."""
        args = self._durable_queue_args(None)
        args["x-dead-letter-exchange"] = ""
        if self.queue_type == "quorum":
            args["x-dead-letter-strategy"] = "at-least-once"
            args["x-overflow"] = "reject-publish"
        return args

    def dead_letter_queue_args(self) -> dict[str, Any]:
        """Arguments of the dead-letter queue (see DEAD_LETTER_DELIVERY_LIMIT)."""
        args = self._durable_queue_args(None)
        if self.queue_type == "quorum":
            args["x-delivery-limit"] = DEAD_LETTER_DELIVERY_LIMIT
        return args

    def subscription_queue_args(self) -> dict[str, Any]:
        """Arguments of every subscription queue (shown by ``codebus topology``)."""
        args = self._durable_queue_args(self.names.dead_exchange)
        if self.queue_type == "quorum":
            args["x-delivery-limit"] = self.delivery_limit
        return args

    async def declare_queue(self, queue: str, patterns: Sequence[str]) -> None:
        ch = self._require(self._pub)
        args = self.subscription_queue_args()
        try:
            q = await ch.declare_queue(queue, durable=True, arguments=args)
        except aiormq.exceptions.ChannelPreconditionFailed as exc:
            await self._reopen_publisher()
            raise BusError(_mismatch(f"queue {queue!r}", exc)) from exc
        self._queue_args[queue] = args
        for pattern in patterns:
            await q.bind(self._exchanges[self.names.events_exchange], validate_pattern(pattern))
        await q.bind(self._exchanges[self.names.retry_exchange], routing_key=queue)

    async def _reopen_publisher(self) -> None:
        conn = self._require(self._conn)
        self._pub = await conn.channel(publisher_confirms=True, on_return_raises=True)
        await self._declare_fixed(self._pub)

    # -- publishing ---------------------------------------------------------------
    async def _publish(
        self, exchange: str, message: Message, routing_key: str, **props: Any
    ) -> None:
        self._require(self._pub)
        amqp = aio_pika.Message(
            body=message.body,
            message_id=message.message_id,
            content_type=message.content_type,
            headers=dict(message.headers),
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            **props,
        )
        try:
            await self._exchanges[exchange].publish(
                amqp, routing_key=routing_key, mandatory=True, timeout=self.publish_timeout
            )
        except aiormq.exceptions.PublishError as exc:
            raise Unroutable(
                f"no queue is bound for {routing_key!r} on {exchange!r}",
                event_id=message.message_id,
            ) from exc
        except aiormq.exceptions.DeliveryError as exc:
            raise PublishNacked(
                f"RabbitMQ nacked the publish to {exchange!r}", event_id=message.message_id
            ) from exc
        except _NOT_SENT as exc:
            raise BrokerUnavailable(
                f"publish to {exchange!r} not sent: {describe(exc)}", event_id=message.message_id
            ) from exc
        except _OUTCOME_UNKNOWN as exc:
            why = (
                f"no confirm within {self.publish_timeout:g}s"
                if isinstance(exc, asyncio.TimeoutError)
                else describe(exc)
            )
            raise PublishOutcomeUnknown(
                f"publish to {exchange!r} not confirmed ({why}); the broker may have taken it",
                event_id=message.message_id,
            ) from exc

    async def publish(self, event: Event, *, headers: Mapping[str, Any] | None = None) -> None:
        await self._publish(self.names.events_exchange, encode(event, headers), event.type)

    async def send(self, queue: str, message: Message, *, delay: float = 0.0) -> None:
        if delay <= 0:
            await self._publish(self.names.retry_exchange, message, queue)
            return
        ms = max(1, int(delay * 1000))
        tiered = message.with_headers(**{HEADER_DELAY_TIER: str(delay_tier(ms))})
        await self._publish(self.names.delay_exchange, tiered, queue, expiration=ms / 1000)

    async def dead_letter(self, message: Message) -> None:
        await self._publish(self.names.dead_exchange, message, message.routing_key)

    # -- consuming ----------------------------------------------------------------
    async def _consumer_channel(self, prefetch: int) -> AbstractChannel:
        ch = await self._require(self._conn).channel(publisher_confirms=False)
        # Queues declared on this channel hand aiormq's messages straight to the
        # callback (see bus.rabbitmq_delivery); restored after a reconnect all the same.
        ch.QUEUE_CLASS = LeanQueue  # type: ignore[misc]
        await ch.set_qos(prefetch_count=prefetch)
        return ch

    async def _start(self, ch: AbstractChannel, q: Any, on_delivery: OnDelivery) -> _RabbitConsumer:
        tracker, name = AckTracker(), q.name
        self._trackers.add(tracker)

        async def callback(dm: DeliveredMessage) -> None:
            await on_delivery(tracker.delivered(dm, name))

        tag = await q.consume(callback, no_ack=False)
        return _RabbitConsumer(name, ch, tag, q, tracker)

    async def consume(self, queue: str, on_delivery: OnDelivery, *, prefetch: int) -> Any:
        ch = await self._consumer_channel(prefetch)
        args = self._queue_args.get(queue, self.subscription_queue_args())
        q = await ch.declare_queue(queue, durable=True, arguments=args)
        return await self._start(ch, q, on_delivery)

    async def tap(self, patterns: Sequence[str], on_delivery: OnDelivery) -> Any:
        ch = await self._consumer_channel(100)
        # A server-named, exclusive, auto-delete classic queue: gone with the channel.
        q = await ch.declare_queue("", exclusive=True, auto_delete=True, durable=False)
        events = await ch.declare_exchange(self.names.events_exchange, passive=True)
        for pattern in patterns:
            await q.bind(events, validate_pattern(pattern))
        return await self._start(ch, q, on_delivery)

    async def get(self, queue: str) -> Delivery | None:
        ch = self._require(self._admin)
        q = await ch.get_queue(queue, ensure=False)
        incoming = await q.get(no_ack=False, fail=False)
        return None if incoming is None else self._fetched.fetched(incoming, queue)

    async def purge(self, queue: str) -> int:
        ch = self._require(self._admin)
        q = await ch.get_queue(queue, ensure=False)
        result = await q.purge()
        return int(getattr(result, "message_count", 0) or 0)

    async def depth(self, queue: str) -> int:
        """Ready messages per queue.declare. On RabbitMQ 3.10 quorum queues this leaves out
        messages that were returned (nacked or requeued) and not yet redelivered."""
        ch = self._require(self._admin)
        # robust=False: aio-pika's robust channel answers a repeated passive declare of a
        # queue it keeps for restoring from its cache, with the FIRST call's count.
        q = await ch.declare_queue(queue, passive=True, robust=False)
        return int(q.declaration_result.message_count or 0)

    async def delete_topology(self, queues: Sequence[str] = ()) -> None:
        """Delete ``queues``, every subscription queue this broker declared, the delay and
        dead-letter queues and the exchanges (tests, benchmarks, uninstall). Messages in
        them are lost: never run this against a live installation by mistake."""
        conn = self._require(self._conn)
        ch = await conn.channel(publisher_confirms=False)
        n = self.names
        fixed = [n.dead_letter_queue] + [
            n.delay_queue(t) for t in range(MIN_DELAY_TIER, MAX_DELAY_TIER + 1)
        ]
        for q in dict.fromkeys([*queues, *self._queue_args, *fixed]):
            await ch.queue_delete(q)
        for ex in (n.events_exchange, n.retry_exchange, n.delay_exchange, n.dead_exchange):
            await ch.exchange_delete(ex)
        await ch.close()

    def _require(self, thing: Any) -> Any:
        if thing is None:
            raise BrokerUnavailable(f"not connected to RabbitMQ at {safe_url(self.url)}")
        return thing


__all__ = ["QueueType", "RabbitBroker", "safe_url"]
