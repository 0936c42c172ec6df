"""The event-loop lag and GC pause metrics of a worker process."""

from __future__ import annotations

import asyncio
import gc
import time

import pytest
from prometheus_client import CollectorRegistry

from bus.middleware.loop_lag import FreezeStartupHeap, LoopLagMonitor
from bus.middleware.metrics import InboxWaits


def sample(registry: CollectorRegistry, name: str, **labels: str) -> float:
    value = registry.get_sample_value(name, labels)
    return 0.0 if value is None else value


async def test_a_blocked_loop_is_seen_as_lag():
    registry = CollectorRegistry()
    monitor = LoopLagMonitor(registry, interval=0.01)
    await monitor.on_start()
    await asyncio.sleep(0.05)  # some healthy samples first
    time.sleep(0.3)  # noqa: ASYNC251 - hold the loop, as a long callback would
    await asyncio.sleep(0.05)
    await monitor.on_stop()
    count = sample(registry, "codebus_event_loop_lag_seconds_count")
    under_a_quarter = sample(registry, "codebus_event_loop_lag_seconds_bucket", le="0.25")
    assert count >= 3
    assert count - under_a_quarter == 1  # exactly the one sample that waited 0.3 s
    assert sample(registry, "codebus_event_loop_lag_seconds_sum") >= 0.29


async def test_gc_pauses_are_recorded_by_generation_until_stopped():
    registry = CollectorRegistry()
    monitor = LoopLagMonitor(registry)
    await monitor.on_start()
    gc.collect()
    assert sample(registry, "codebus_gc_pause_seconds_count", generation="2") >= 1
    await monitor.on_stop()
    before = sample(registry, "codebus_gc_pause_seconds_count", generation="2")
    gc.collect()
    assert sample(registry, "codebus_gc_pause_seconds_count", generation="2") == before


def test_interval_must_be_positive():
    with pytest.raises(ValueError, match="interval"):
        LoopLagMonitor(CollectorRegistry(), interval=0)


def test_inbox_waits_by_operation():
    registry = CollectorRegistry()
    waits = InboxWaits(registry)
    waits.observe("claim", 0.002)
    waits.observe("complete", 0.2)
    assert sample(registry, "codebus_inbox_wait_seconds_bucket", operation="claim", le="0.0025")
    assert not sample(registry, "codebus_inbox_wait_seconds_bucket", operation="complete", le="0.1")


async def test_the_start_up_heap_is_frozen_while_the_worker_runs():
    freeze = FreezeStartupHeap()
    try:
        await freeze.on_start()
        frozen = gc.get_freeze_count()
        assert frozen > 1000  # the modules, classes and functions loaded so far
        # a full collection now walks only what was allocated since
        assert len(gc.get_objects(generation=2)) < frozen / 10
    finally:
        await freeze.on_stop()
    assert gc.get_freeze_count() == 0
