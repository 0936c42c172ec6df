"""Chaos scenario 5: the worker's Redis (a private server) stopped for 30 s, killed, and
hung (SIGSTOP) under load. Lost 0, handler runs without a claim 0, processing resumed
within 5 s of Redis coming back."""

from __future__ import annotations

import asyncio
import signal
import time

import pytest
import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from bus import deadletters
from bus.rabbitmq import RabbitBroker
from schemas.envelope import new_event
from tests import reports
from tests.bus.conftest import delete_rabbit_topology
from tests.chaos.chaos_worker import SUBSCRIPTION, key
from tests.chaos.services import ChaosWorker, PrivateRedis

pytestmark = pytest.mark.timeout(300)

RESUME_WITHIN = 5.0


async def test_redis_stopped_killed_and_hung_under_load(
    amqp_url, names, private_redis: PrivateRedis, tmp_path
):
    broker = RabbitBroker(amqp_url, names=names)
    await broker.connect()
    queue = names.subscription_queue(SUBSCRIPTION)
    await broker.declare_queue(queue, ["deployment.requested"])
    worker = ChaosWorker(
        amqp_url, private_redis.url, names.prefix, tmp_path / "worker.log", concurrency=16
    )
    await asyncio.to_thread(worker.start)
    redis = aioredis.Redis.from_url(private_redis.url, socket_timeout=2)
    published: list[str] = []
    stop = asyncio.Event()

    async def publish_forever() -> None:
        n = 0
        while not stop.is_set():
            event = new_event("deployment.requested", {"app": "chaos", "version": str(n)})
            n += 1
            await broker.publish(event)  # the shared broker is healthy here
            published.append(event.id)
            await asyncio.sleep(0.01)

    async def processed() -> int:
        # The test's own connection dies with the server as well: reconnect and ask again.
        for _ in range(100):
            try:
                return int(await redis.hlen(key(names, "ledger")))
            except (RedisConnectionError, RedisTimeoutError):
                await asyncio.sleep(0.05)
        raise AssertionError("the private Redis does not answer the test")

    async def resumed_after(restored: float) -> float:
        """Seconds from Redis's return until the ledger grows again."""
        before = await processed()
        while await processed() <= before:
            assert time.monotonic() - restored < 60, "processing never resumed"
            await asyncio.sleep(0.05)
        return time.monotonic() - restored

    publisher = asyncio.create_task(publish_forever())
    resumed: dict[str, float] = {}
    try:
        await asyncio.sleep(2)
        # 1. Stopped (SIGTERM: a clean shutdown) for 30 s, then started again.
        private_redis.proc.send_signal(signal.SIGTERM)  # type: ignore[union-attr]
        await asyncio.to_thread(private_redis.proc.wait)  # type: ignore[union-attr]
        await asyncio.sleep(30)
        await asyncio.to_thread(private_redis.start)
        resumed["stopped_30s"] = await resumed_after(time.monotonic())
        await asyncio.sleep(2)
        # 2. Killed (SIGKILL) and restarted at once.
        private_redis.kill()
        await asyncio.to_thread(private_redis.start)
        resumed["killed"] = await resumed_after(time.monotonic())
        await asyncio.sleep(2)
        # 3. Hung (SIGSTOP) for 10 s: connections stay open, nothing answers.
        private_redis.pause()
        await asyncio.sleep(10)
        private_redis.resume()
        resumed["hung_10s"] = await resumed_after(time.monotonic())
        await asyncio.sleep(2)
        stop.set()
        await publisher
        deadline = time.monotonic() + 60
        while await processed() < len(published):
            assert time.monotonic() < deadline, f"{await processed()}/{len(published)}"
            await asyncio.sleep(0.2)
        await asyncio.sleep(1.0)  # late duplicates would land now
    finally:
        stop.set()
        await asyncio.gather(publisher, return_exceptions=True)
        code = await asyncio.to_thread(worker.stop)
    counts = {k.decode(): int(v) for k, v in (await redis.hgetall(key(names, "ledger"))).items()}
    noclaim = await redis.hlen(key(names, "noclaim"))
    await redis.aclose()
    dead = len(await deadletters.list_dead_letters(broker, limit=1000))
    await broker.close()
    await delete_rabbit_topology(amqp_url, names, [queue])
    lost = len(set(published) - counts.keys())
    twice = sum(1 for v in counts.values() if v > 1)
    figures = (
        f"events={len(published)} lost={lost} applied_twice={twice} "
        f"runs_without_claim={noclaim} dead_letters={dead} resumed_within="
        + ",".join(f"{k}:{v:.1f}s" for k, v in resumed.items())
    )
    reports.report("chaos 5 redis faults", figures)
    assert code == 0, figures
    assert lost == 0 and twice == 0 and noclaim == 0 and dead == 0, figures
    assert max(resumed.values()) <= RESUME_WITHIN, figures
