"""A deploy + security worker process for the flow crash test (it gets SIGKILLed).

python -m tests.flows.crash_flows_worker AMQP_URL REDIS_URL PREFIX K8S_URL TOKEN ROOT
"""

from __future__ import annotations

import asyncio
import signal
import sys
from pathlib import Path

from schemas.flows import CanarySpec, FlowsConfig, StrategySpec
from schemas.names import Names
from tests.flows.live import running_stack, tool_servers
from workers.app import connect_redis

STEPS = ({"set_weight": 25}, {"pause": 0.3}, {"set_weight": 50}, {"pause": 0.3})


def crash_config(root: str) -> FlowsConfig:
    """Canaries of 4 replicas: 25 %, bake, 50 %, bake, promote."""
    # Polls every 0.5 s: the stand-in makes one rollout step per read; the deadline is
    # not what this test is about (a loaded CI machine must not turn into rollbacks).
    canary = CanarySpec(replicas=4, steps=STEPS, poll_interval=0.5, step_deadline=600)  # type: ignore[arg-type]
    return FlowsConfig(
        manifest_roots=(root,), allow_unlisted_apps=True, default=StrategySpec(canary=canary)
    )


async def main(amqp_url: str, redis_url: str, prefix: str, k8s: str, token: str, root: str) -> None:
    names = Names(prefix=prefix)
    redis = await connect_redis(redis_url)  # as production: socket timeouts, health checks
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    servers = tool_servers(k8s, token, None)
    async with running_stack(
        amqp_url,
        redis,
        names,
        Path(root),
        crash_config(root),
        servers,
        units=("deploy", "security", "audit"),
    ):
        print("ready", flush=True)
        await stop.wait()
    await redis.aclose()


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:7]))
