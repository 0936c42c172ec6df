"""A gateway process for the file-descriptor exhaustion test: memory broker, live Redis,
``server`` limits from argv, the file-descriptor limit lowered before serving. Prints
``READY`` once listening; stops on SIGTERM.

    python -m tests.security.gateway.fd_gateway PORT FD_LIMIT MAX_CONNECTIONS
"""

from __future__ import annotations

import asyncio
import logging
import resource
import signal
import sys

import redis.asyncio as aioredis

from bus.memory import MemoryBroker
from schemas.gateway_config import GatewayConfig
from schemas.names import Names
from tests.conftest import REDIS_URL
from tests.gateway.conftest import config_document
from workers.cli_gateway import serve_gateway


async def main(port: int, fd_limit: int, cap: int) -> None:
    logging.basicConfig(level=logging.INFO, stream=sys.stderr)
    names = Names(prefix="fdtest")
    broker = MemoryBroker(names)
    await broker.connect()
    redis = aioredis.Redis.from_url(REDIS_URL)
    doc = config_document()
    doc["server"] = {
        "max_connections": cap,
        "backlog": 1024,
        "idle_timeout_seconds": 1.0,
        "body_timeout_seconds": 2.0,
    }
    config = GatewayConfig.model_validate(doc)
    resource.setrlimit(resource.RLIMIT_NOFILE, (fd_limit, fd_limit))
    stop, started = asyncio.Event(), asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    serving = asyncio.create_task(
        serve_gateway(
            config, broker, redis, names, host="127.0.0.1", port=port, stop=stop, started=started
        )
    )
    await started.wait()
    print("READY", flush=True)
    await serving
    await broker.close()
    await redis.aclose()


if __name__ == "__main__":
    asyncio.run(main(*(int(a) for a in sys.argv[1:4])))
