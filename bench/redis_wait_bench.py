"""What ``WAIT 1 <ms>`` after each done-mark would cost: a private Redis primary with one
replica on loopback; the inbox's commit shape (a Lua script writing the done-mark and
one effect) alone, and pipelined with ``WAIT 1 100`` on the same connection (WAIT
covers the calling connection's writes only), sequential and with 32 concurrent callers.

    python -m bench.redis_wait_bench [--ops 5000]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
import subprocess
import tempfile
import time
from collections.abc import Iterator

import redis.asyncio as aioredis

from bench.private_services import free_port

COMMIT = """
redis.call('SET', KEYS[1], 'done', 'PX', 600000)
redis.call('HINCRBY', KEYS[2], ARGV[1], 1)
return 1
"""


@contextlib.contextmanager
def primary_with_replica() -> Iterator[str]:
    with tempfile.TemporaryDirectory(prefix="codebus-wait-") as tmp:
        ports = [free_port(), free_port()]
        procs = []
        for i, port in enumerate(ports):
            extra = ["--replicaof", "127.0.0.1", str(ports[0])] if i else []
            cmd = ["redis-server", "--port", str(port), "--bind", "127.0.0.1"]
            cmd += ["--save", "", "--appendonly", "no", "--dir", tmp, *extra]
            procs.append(subprocess.Popen(cmd, stdout=subprocess.DEVNULL))
        try:
            deadline = time.monotonic() + 20
            while (
                b"connected_slaves:1"
                not in subprocess.run(
                    ["redis-cli", "-p", str(ports[0]), "info", "replication"], capture_output=True
                ).stdout
            ):
                if time.monotonic() > deadline:
                    raise RuntimeError("replica did not connect")
                time.sleep(0.1)
            yield f"redis://127.0.0.1:{ports[0]}/0"
        finally:
            for p in procs:
                p.terminate()
                p.wait(10)


async def run(url: str, ops: int, callers: int, wait: bool) -> tuple[float, float, float, int]:
    """msg/s, p50 ms, p99 ms, WAIT replies below 1 (replica not acknowledged in time)."""
    redis = aioredis.Redis.from_url(url, max_connections=callers + 4)
    script = redis.register_script(COMMIT)
    await script(keys=["w:warm", "w:ledger"], args=["warm"])
    latencies: list[float] = []
    short = 0
    per_caller = ops // callers

    async def caller(c: int) -> None:
        nonlocal short
        for i in range(per_caller):
            t0 = time.perf_counter()
            if wait:
                pipe = redis.pipeline(transaction=False)
                await script(keys=[f"w:{c}:{i}", "w:ledger"], args=[f"{c}:{i}"], client=pipe)
                pipe.wait(1, 100)
                _, acked = await pipe.execute()
                short += int(acked) < 1
            else:
                await script(keys=[f"w:{c}:{i}", "w:ledger"], args=[f"{c}:{i}"])
            latencies.append(time.perf_counter() - t0)

    t0 = time.perf_counter()
    await asyncio.gather(*(caller(c) for c in range(callers)))
    elapsed = time.perf_counter() - t0
    await redis.flushdb()
    await redis.aclose()
    q = statistics.quantiles(latencies, n=100)
    return len(latencies) / elapsed, q[49] * 1000, q[98] * 1000, short


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--ops", type=int, default=5000)
    args = ap.parse_args()
    with primary_with_replica() as url:
        print("callers | WAIT | ops/s | p50 ms | p99 ms | WAIT short")
        for callers in (1, 32):
            for wait in (False, True):
                rate, p50, p99, short = await run(url, args.ops, callers, wait)
                print(
                    f"{callers:7d} | {'yes' if wait else 'no':4s} | {rate:6.0f} | {p50:6.2f} |"
                    f" {p99:6.2f} | {short}"
                )


if __name__ == "__main__":
    asyncio.run(main())
