"""The metrics a worker process exports about its own latency: event-loop lag, GC
pauses and the time each delivery waits for the inbox."""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from bus.memory import MemoryBroker
from bus.router import Router
from bus.runtime import Worker
from schemas.envelope import new_event
from workers.app import make_middleware
from workers.settings import load_settings


async def test_a_worker_exports_loop_lag_gc_pauses_and_inbox_waits(redis_client, names):
    settings = load_settings(prefix=names.prefix)
    registry = CollectorRegistry()
    router = Router("metrics")
    handled: list[str] = []

    @router.subscribe("deployment.requested", name="metrics.noop")
    async def noop(payload, ctx) -> None:  # type: ignore[no-untyped-def]
        handled.append(ctx.event.id)

    broker = MemoryBroker(names)
    await broker.connect()
    worker = Worker(
        broker,
        router.subscriptions,
        middleware=make_middleware(settings, redis_client, registry),
    )
    await worker.start()
    try:
        for i in range(3):
            await broker.publish(new_event("deployment.requested", {"app": "m", "version": str(i)}))
        await broker.join(10)
    finally:
        await worker.stop()
        await broker.close()
    assert len(handled) == 3

    def value(name: str, **labels: str) -> float | None:
        return registry.get_sample_value(name, labels)

    assert value("codebus_inbox_wait_seconds_count", operation="claim") == 3
    assert value("codebus_inbox_wait_seconds_count", operation="complete") == 3
    assert value("codebus_event_loop_lag_seconds_count") is not None
    # the start-up collection before freezing the heap is a generation-2 pause
    assert (value("codebus_gc_pause_seconds_count", generation="2") or 0) >= 1
