"""Chaos scenario 3 (issue 8, B and D): failing commit effects of every kind among 500
good events, in a real worker process. Good events all processed, each bad one
dead-lettered with its reason, no prefetch slot leaked, and /readyz reports a stall
when one is forced."""

from __future__ import annotations

import asyncio
import json
import time

import pytest

from bus import deadletters
from bus.rabbitmq import RabbitBroker
from schemas.envelope import new_event
from tests import reports
from tests.bus.conftest import delete_rabbit_topology
from tests.chaos.chaos_worker import SUBSCRIPTION, key
from tests.chaos.services import ChaosWorker
from tests.conftest import REDIS_URL

pytestmark = pytest.mark.timeout(240)

GOOD = 500
BAD_KINDS = ("wrongtype", "dataerror", "raises")
BAD_EACH = 8  # 24 bad events with concurrency 8: a slot leaked per bad one would stall


async def test_failing_effects_among_good_events(amqp_url, names, redis_client, tmp_path):
    await redis_client.set(key(names, "string"), "not a hash")
    broker = RabbitBroker(amqp_url, names=names)
    await broker.connect()
    queue = names.subscription_queue(SUBSCRIPTION)
    await broker.declare_queue(queue, ["deployment.requested"])
    worker = ChaosWorker(amqp_url, REDIS_URL, names.prefix, tmp_path / "worker.log", concurrency=8)
    await asyncio.to_thread(worker.start)
    good = [
        new_event("deployment.requested", {"app": "good", "version": str(i)}) for i in range(GOOD)
    ]
    bad = [
        new_event("deployment.requested", {"app": kind, "version": f"{kind}{i}"})
        for kind in BAD_KINDS
        for i in range(BAD_EACH)
    ]
    stream = list(good)
    for i, event in enumerate(bad):  # spread the bad ones through the stream
        stream.insert(i * (GOOD // len(bad)), event)
    try:
        for i in range(0, len(stream), 50):
            await asyncio.gather(*(broker.publish(e) for e in stream[i : i + 50]))
        deadline = time.monotonic() + 90
        while True:
            done = await redis_client.hlen(key(names, "ledger"))
            # (Counted by taking them: queue.declare's message count of a quorum queue
            # lags on RabbitMQ 3.10.)
            dead = len(await deadletters.list_dead_letters(broker, limit=1000))
            if done >= GOOD and dead >= len(bad):
                break
            assert time.monotonic() < deadline, f"processed {done}/{GOOD}, dead {dead}/{len(bad)}"
            await asyncio.sleep(0.2)
        status, body = await asyncio.to_thread(worker.ready)
        assert status == 200, body  # nothing stuck: every slot came back
        # Force a stall: 8 handlers that never finish fill the window (concurrency 8).
        for i in range(8):
            await broker.publish(
                new_event("deployment.requested", {"app": "hang", "version": f"h{i}"})
            )
        deadline = time.monotonic() + 30
        while (ready := await asyncio.to_thread(worker.ready))[0] == 200:
            assert time.monotonic() < deadline, "readiness never reported the stall"
            await asyncio.sleep(0.2)
        stalled = json.loads(ready[1])["checks"]["worker"]
    finally:
        code = await asyncio.to_thread(worker.stop)
    counts = {
        k.decode(): int(v) for k, v in (await redis_client.hgetall(key(names, "ledger"))).items()
    }
    letters = await deadletters.list_dead_letters(broker, limit=1000)
    by_id = {d.message_id: d for d in letters}
    await broker.close()
    await delete_rabbit_topology(amqp_url, names, [queue])
    good_ok = sum(1 for e in good if counts.get(e.id) == 1)
    bad_written = sum(1 for e in bad if e.id in counts)
    figures = (
        f"good={GOOD} processed_once={good_ok} bad={len(bad)} dead_lettered={len(by_id)} "
        f"bad_partially_written={bad_written} readyz_after_stall=503 ({stalled})"
    )
    reports.report("chaos 3 failing effects", figures)
    assert code == 0, figures
    assert good_ok == GOOD and bad_written == 0, figures
    assert sorted(by_id) == sorted(e.id for e in bad), figures
    for e in bad:
        letter = by_id[e.id]
        kind = e.data["app"]
        if kind == "wrongtype":
            assert letter.kind == "exhausted" and "WRONGTYPE" in letter.reason, letter
        else:
            assert letter.kind == "rejected" and "EffectFailed" in letter.reason, letter
    assert "none settled" in stalled, stalled
