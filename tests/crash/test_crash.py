"""Crash test on live RabbitMQ and Redis (chaos scenario 1 of issue 8): a worker process
handling 10,000 events is killed with SIGKILL 20 times mid-stream and restarted.
Nothing may be lost and no side effect may be applied twice."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bus import deadletters
from bus.rabbitmq import RabbitBroker
from schemas.envelope import new_event
from tests import reports
from tests.bus.conftest import delete_rabbit_topology
from tests.crash.crash_worker import ledger_key, runs_key

ROOT = Path(__file__).resolve().parents[2]
EVENTS = 10_000
KILL_AT = tuple(400 + 470 * i for i in range(20))  # ledger sizes at which to SIGKILL

pytestmark = [pytest.mark.slow, pytest.mark.timeout(480)]


def start_worker(amqp_url: str, redis_url: str, prefix: str) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.crash.crash_worker", amqp_url, redis_url, prefix],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line.strip() == "ready", f"worker did not start: {line}{proc.stdout.read()}"
    return proc


async def test_sigkill_mid_stream_loses_nothing_and_applies_nothing_twice(
    amqp_url, redis_url, redis_client, names
):
    broker = RabbitBroker(amqp_url, names=names)
    await broker.connect()
    queue = names.subscription_queue("crash.ledger")
    await broker.declare_queue(queue, ["deployment.requested"])
    events = [
        new_event("deployment.requested", {"app": "crash", "version": str(i)})
        for i in range(EVENTS)
    ]
    ledger = ledger_key(names)
    proc = start_worker(amqp_url, redis_url, names.prefix)
    kills = 0
    try:

        async def publish_all() -> None:
            for i in range(0, EVENTS, 250):
                await asyncio.gather(*(broker.publish(e) for e in events[i : i + 250]))

        publisher = asyncio.create_task(publish_all())
        for threshold in KILL_AT:
            deadline = time.monotonic() + 120
            while await redis_client.hlen(ledger) < threshold:
                assert time.monotonic() < deadline, f"stuck below {threshold}"
                await asyncio.sleep(0.005)
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            kills += 1
            proc = start_worker(amqp_url, redis_url, names.prefix)
        await publisher
        deadline = time.monotonic() + 120
        while await redis_client.hlen(ledger) < EVENTS and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        await asyncio.sleep(3.0)  # leases of the killed workers expire; late copies drain
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    counts = {k.decode(): int(v) for k, v in (await redis_client.hgetall(ledger)).items()}
    runs = {k.decode(): int(v) for k, v in (await redis_client.hgetall(runs_key(names))).items()}
    expected = {e.id for e in events}
    lost = len(expected - counts.keys())
    applied_twice = sum(1 for v in counts.values() if v > 1)
    reexecuted = sum(v - 1 for v in runs.values() if v > 1)
    # Counted by taking them: queue.declare's count of a quorum queue lags on 3.10.
    dead = len(await deadletters.list_dead_letters(broker, limit=1000))
    missing = sorted(expected - counts.keys())[:5]
    inbox_state = {m: await redis_client.get(names.inbox_key("crash.ledger", m)) for m in missing}
    in_queue = 0
    while (d := await broker.get(queue)) is not None:
        in_queue += 1
        await d.ack()
    figures = (
        f"events={EVENTS} kills={kills} lost={lost} applied_twice={applied_twice} "
        f"handler_reexecutions={reexecuted} dead_letters={dead}"
        + (f" missing={inbox_state} still_queued={in_queue}" if missing else "")
    )
    print(figures)
    reports.report("crash test", figures)
    await broker.close()
    await delete_rabbit_topology(amqp_url, names, [queue])
    assert kills == len(KILL_AT)
    assert lost == 0, figures
    assert applied_twice == 0, figures
    assert set(counts) == expected
    assert dead == 0, figures
