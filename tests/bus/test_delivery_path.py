"""The delivery path's CPU savings keep their behaviour: batches written without a task
per batch, one reply reader per connection, one lease keeper under steady load, metrics
children cached per subscription, no log line built for a success at INFO."""

from __future__ import annotations

import asyncio
import logging
from types import SimpleNamespace
from typing import Any

from prometheus_client import CollectorRegistry

from bus.inbox import _OPS, Inbox
from bus.middleware import LoggingMiddleware, MetricsMiddleware, Processing
from bus.outcome import DeadLetter, Done
from bus.redis_batch import ScriptBatcher
from tests.bus.test_redis_batch import counting


async def test_steady_batches_are_written_without_a_writer_task(redis_client, names):
    batcher = ScriptBatcher(redis_client, _OPS)
    sizes = counting(batcher)
    tasks = 0
    real = batcher._write_all

    async def write_all() -> None:
        nonlocal tasks
        tasks += 1
        await real()

    batcher._write_all = write_all  # type: ignore[method-assign]
    await batcher.call("claim", f"{names.prefix}:first", "run:a", 5000)  # connects
    for r in range(5):
        keys = [f"{names.prefix}:s{r}:{i}" for i in range(10)]
        results = await asyncio.gather(*(batcher.call("claim", k, "run:a", 5000) for k in keys))
        assert [int(x[0]) for x in results] == [1] * 10
    assert sizes == [1] + [10] * 5
    assert tasks == 1  # only the first batch (connect + script load) needed the task
    await batcher.aclose()


async def test_one_reader_per_connection_ends_with_aclose(redis_client, names):
    batcher = ScriptBatcher(redis_client, _OPS)
    await batcher.call("claim", f"{names.prefix}:r1", "run:a", 5000)
    pipe = batcher._pipe
    assert pipe is not None
    reader = pipe.reader
    assert reader is not None and not reader.done()  # waiting for the next batch
    await batcher.call("claim", f"{names.prefix}:r2", "run:a", 5000)
    assert pipe.reader is reader  # the same task read the second reply
    await asyncio.wait_for(batcher.aclose(), 2)
    assert reader.done()


async def test_the_lease_keeper_serves_successive_claims_then_ends(redis_client, names):
    inbox = Inbox(redis_client, names, lease=0.3)  # a keeper round every 0.1 s
    keepers = set()
    for i in range(5):
        claim = await inbox.claim("s", f"k{i}")
        keepers.add(inbox._keeper)
        assert await inbox.complete(claim)  # type: ignore[arg-type]
    assert len(keepers) == 1  # one task, not one per claim
    keeper = keepers.pop()
    assert keeper is not None
    await asyncio.wait_for(keeper, 1)  # ends one round after its last claim
    # and a claim held longer than the lease is still kept alive by a new keeper
    held = await inbox.claim("s", "long")
    await asyncio.sleep(0.5)
    assert await redis_client.pttl(held.key) > 0  # type: ignore[union-attr]
    assert await inbox.complete(held)  # type: ignore[arg-type]
    await inbox.aclose()


def processing(sub: str) -> Processing:
    delivery: Any = SimpleNamespace(message=SimpleNamespace(message_id="m1"))
    subscription: Any = SimpleNamespace(name=sub)
    return Processing(delivery, subscription, 1, asyncio.Event())


async def test_metrics_follow_each_outcome_per_subscription():
    registry = CollectorRegistry()
    metrics = MetricsMiddleware(registry)
    outcomes = [Done(), Done(duplicate=True), Done(), DeadLetter("invalid", "bad")]
    for sub in ("a", "b"):
        for outcome in outcomes if sub == "a" else outcomes[:1]:
            p = processing(sub)
            await metrics.before_process(p)
            assert registry.get_sample_value("codebus_events_in_flight", {"subscription": sub})
            await metrics.after_process(p, outcome)

    def processed(sub: str, label: str) -> float | None:
        labels = {"subscription": sub, "outcome": label}
        return registry.get_sample_value("codebus_events_processed_total", labels)

    assert processed("a", "done") == 2
    assert processed("a", "duplicate") == 1
    assert processed("a", "dead_letter") == 1
    assert processed("b", "done") == 1 and processed("b", "duplicate") is None
    for sub, n in (("a", 4), ("b", 1)):
        assert registry.get_sample_value("codebus_events_in_flight", {"subscription": sub}) == 0
        count = registry.get_sample_value(
            "codebus_event_processing_seconds_count", {"subscription": sub}
        )
        assert count == n


async def test_a_success_is_logged_only_at_debug(caplog):
    middleware = LoggingMiddleware()
    p = processing("s")
    with caplog.at_level(logging.INFO, logger="codebus.worker"):
        await middleware.after_process(p, Done())
    assert not caplog.records
    with caplog.at_level(logging.DEBUG, logger="codebus.worker"):
        await middleware.after_process(p, Done())
        await middleware.after_process(p, DeadLetter("invalid", "bad field"))
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 2 and " done in " in lines[0] and "bad field" in lines[1]
