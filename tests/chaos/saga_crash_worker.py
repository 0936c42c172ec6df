"""The ``workflows`` unit as its own process for the saga crash test: live RabbitMQ and
Redis, the real kubernetes adapter on the test's API-server stand-in.

    python -m tests.chaos.saga_crash_worker AMQP_URL REDIS_URL PREFIX K8S_URL TOKEN
"""

from __future__ import annotations

import asyncio
import sys

import redis.asyncio as aioredis
from prometheus_client import CollectorRegistry

from bus.rabbitmq import RabbitBroker
from bus.runtime import Worker
from schemas.names import Names
from tools.adapters.kubernetes import KubernetesServer
from tools.adapters.kubernetes_client import KubernetesConfig
from workers.app import make_middleware
from workers.settings import Settings
from workers.toolbox import ToolsFile, build_toolbox, guard_config
from workers.units import UNITS


async def main(amqp_url: str, redis_url: str, prefix: str, k8s_url: str, token: str) -> None:
    names = Names(prefix=prefix)
    # A short inbox lease: the claims of a killed process lapse quickly.
    settings = Settings(
        prefix=prefix, inbox_lease=2.0, retry_base_delay=0.1, retry_max_delay=1.0, max_attempts=10
    )
    redis = aioredis.Redis.from_url(redis_url)
    k8s = KubernetesServer(KubernetesConfig(host=k8s_url, token=token, verify_ssl=False))  # type: ignore[arg-type]
    toolbox = build_toolbox([k8s], redis, names, guard_config(ToolsFile()), "crash-workflows")
    await toolbox.start()
    broker = RabbitBroker(amqp_url, names=names, connection_name=f"saga-crash-{prefix}")
    await broker.connect()
    worker = Worker(
        broker,
        UNITS["workflows"].subscriptions(),
        middleware=make_middleware(settings, redis, CollectorRegistry()),
        concurrency=16,
        deps={"redis": redis, "names": names, "toolbox": toolbox.as_role("workflows")},
        grace_period=5,
    )
    print("ready", flush=True)
    await worker.run_until_signalled()
    await toolbox.close()
    await broker.close()
    await redis.aclose()


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:6]))
