"""DeliveryLog on live Redis: attempts, states, bounds, queries."""

from __future__ import annotations

import asyncio

from tools.webhooks.log import DeliveryLog


class Tick:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        self.t += 1
        return self.t


async def _record(log: DeliveryLog, event_id: str, sub: str = "rx", **kw) -> object:
    args = {"state": "retrying", "status_code": 503, "error": "boom"} | kw
    return await log.record(
        subscription=sub, url="https://rx.example/", event_id=event_id, event_type="a.b", **args
    )


async def test_attempts_accumulate_and_success_is_recorded(redis_client, names) -> None:
    log = DeliveryLog(redis_client, names, clock=Tick())
    first = await _record(log, "e1")
    assert (first.attempts, first.state, first.status_code) == (1, "retrying", 503)
    assert not await log.has_succeeded("e1", "rx")
    done = await _record(log, "e1", state="succeeded", status_code=200, error=None)
    assert done.attempts == 2
    assert done.last_error is None and done.status_code == 200
    assert done.first_attempt_at == first.first_attempt_at < done.last_attempt_at
    assert done.succeeded_at == done.last_attempt_at
    assert await log.has_succeeded("e1", "rx")
    assert not await log.has_succeeded("e1", "other")


async def test_concurrent_attempts_are_all_counted(redis_client, names) -> None:
    log = DeliveryLog(redis_client, names)
    await asyncio.gather(*(_record(log, "e2") for _ in range(20)))
    record = await log.get("e2", "rx")
    assert record is not None and record.attempts == 20


async def test_log_is_bounded_dropping_the_oldest(redis_client, names) -> None:
    log = DeliveryLog(redis_client, names, max_records=5, clock=Tick())
    for i in range(8):
        await _record(log, f"e{i}")
    assert await redis_client.hlen(names.deliveries_key) == 5
    assert await redis_client.zcard(names.deliveries_index_key) == 5
    assert await log.get("e0", "rx") is None
    recent = await log.recent(10)
    assert [r.event_id for r in recent] == ["e7", "e6", "e5", "e4", "e3"]


async def test_recent_filters(redis_client, names) -> None:
    log = DeliveryLog(redis_client, names, clock=Tick())
    await _record(log, "a", sub="one", state="succeeded", status_code=200, error=None)
    await _record(log, "b", sub="two", state="failed", status_code=404, error="gone")
    await _record(log, "c", sub="one", state="failed", status_code=410, error="gone")
    assert [r.event_id for r in await log.recent(subscription="one")] == ["c", "a"]
    assert [r.event_id for r in await log.recent(state="failed")] == ["c", "b"]
    assert [r.event_id for r in await log.recent(1)] == ["c"]
