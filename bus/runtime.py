"""The worker: consumes the queues of a set of subscriptions with bounded concurrency
and drains gracefully on stop (SIGTERM)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Mapping, Sequence
from typing import Any

from bus.abc import Broker, Consumer
from bus.consumer import SubscriptionConsumer
from bus.middleware.base import Middleware
from bus.router import Subscription

log = logging.getLogger("codebus.worker")


class Worker:
    """Runs ``subscriptions`` on ``broker``.

    ``concurrency`` is the prefetch of each subscription's consumer: at most that many
    deliveries of one queue are in flight. :meth:`check` is its readiness (consumers
    attached, deliveries settling: see :meth:`problems` and ``stall_after``). ``stop()``
    stops taking work, waits up to ``grace_period`` for in-flight deliveries, then
    cancels the rest (they are requeued).
    """

    def __init__(
        self,
        broker: Broker,
        subscriptions: Sequence[Subscription],
        *,
        middleware: Sequence[Middleware] = (),
        concurrency: int = 16,
        deps: Mapping[str, Any] | None = None,
        grace_period: float = 30.0,
        source: str = "codebus",
        stall_after: float = 300.0,
    ) -> None:
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        self.broker = broker
        self.subscriptions = list(subscriptions)
        self.middleware = list(middleware)
        self.concurrency = concurrency
        self.grace_period = grace_period
        self.stopping = asyncio.Event()
        self._consumers: list[tuple[SubscriptionConsumer, Consumer]] = []
        self._deps = dict(deps or {})
        self._source = source
        self.started = False
        self.stall_after = stall_after

    def problems(self) -> list[str]:
        """Why the worker cannot make progress now (empty when it can): not started, a
        consumer not attached (reconnect pending), or a subscription whose prefetch
        window has been full for ``stall_after`` seconds without a delivery settling."""
        if not self.started:
            return ["worker not started"]
        found = []
        for handler, consumer in self._consumers:
            if not getattr(consumer, "attached", True):
                found.append(f"{handler.queue}: consumer not attached")
            stalled = handler.stalled_for()
            if stalled >= self.stall_after:
                found.append(
                    f"{handler.queue}: {handler.unsettled} deliveries in flight, none settled "
                    f"for {stalled:.0f}s"
                )
        return found

    async def check(self) -> None:
        """Readiness check: raise with the :meth:`problems` when there are any."""
        found = self.problems()
        if found:
            raise RuntimeError("; ".join(found))

    async def start(self) -> None:
        """Declare every subscription's queue and start consuming."""
        for m in self.middleware:
            await m.on_start()
        for sub in self.subscriptions:
            handler = SubscriptionConsumer(
                self.broker,
                sub,
                middleware=self.middleware,
                deps=self._deps,
                stopping=self.stopping,
                source=self._source,
            )
            await self.broker.declare_queue(handler.queue, sub.patterns)
            handler.prefetch = self.concurrency
            consumer = await self.broker.consume(handler.queue, handler, prefetch=self.concurrency)
            self._consumers.append((handler, consumer))
            log.info("consuming %s (%s)", handler.queue, ", ".join(sub.patterns))
        self.started = True

    def in_flight(self) -> int:
        """Deliveries being processed now."""
        return sum(len(h.in_flight) for h, _ in self._consumers)

    async def stop(self) -> None:
        """Stop consuming, drain in-flight work within the grace period, then cancel."""
        self.stopping.set()
        for _, consumer in self._consumers:
            await consumer.cancel()
        deadline = asyncio.get_running_loop().time() + self.grace_period
        while self.in_flight() and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.02)
        leftovers = [t for h, _ in self._consumers for t in h.in_flight]
        if leftovers:
            log.warning("grace period over; cancelling %d deliveries (requeued)", len(leftovers))
            for t in leftovers:
                t.cancel()
            await asyncio.gather(*leftovers, return_exceptions=True)
        for _, consumer in self._consumers:
            await consumer.close()
        for m in self.middleware:
            await m.on_stop()
        self._consumers.clear()
        self.started = False

    async def run_until_signalled(self) -> None:
        """Start, wait for SIGTERM or SIGINT, then stop gracefully."""
        loop = asyncio.get_running_loop()
        done = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError):
                loop.add_signal_handler(sig, done.set)
        await self.start()
        try:
            await done.wait()
            log.info("signal received; draining %d in-flight deliveries", self.in_flight())
        finally:
            await self.stop()
