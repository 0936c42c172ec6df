"""The baseline for bench/latency_bench.py: a straightforward aio-pika consumer in a
process of its own (like the codebus worker), manual ack, the given prefetch.

    python -m bench.raw_consumer AMQP_URL QUEUE PREFETCH OUT

Prints ``ready`` once consuming; on SIGTERM stops and writes, per message, ``time.time()``
after ``ack()`` minus the publish timestamp in the ``x-bench-sent`` header (float64
seconds) to OUT.
"""

from __future__ import annotations

import asyncio
import signal
import sys
import time
from array import array
from pathlib import Path

import aio_pika
from aio_pika.abc import AbstractIncomingMessage

SENT_AT = "x-bench-sent"


async def main(url: str, queue: str, prefetch: int) -> array[float]:
    latencies = array("d")
    conn = await aio_pika.connect_robust(url)
    ch = await conn.channel()
    await ch.set_qos(prefetch_count=prefetch)
    q = await ch.get_queue(queue, ensure=True)

    async def on_message(message: AbstractIncomingMessage) -> None:
        await message.ack()
        latencies.append(time.time() - float(message.headers[SENT_AT]))  # type: ignore[arg-type]

    tag = await q.consume(on_message)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    print("ready", flush=True)
    await stop.wait()
    await q.cancel(tag)
    await conn.close()
    return latencies


if __name__ == "__main__":
    result = asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3])))
    Path(sys.argv[4]).write_bytes(result)
