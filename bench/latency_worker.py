"""The production ``codebus worker`` with a bench-only unit, for bench/latency_bench.py.

    python -m bench.latency_worker --concurrency 16     (CODEBUS_* settings from the env)

Registers a unit ``bench`` (one subscription, a no-op handler on
``deployment.requested``) and runs the ``codebus worker bench`` command itself: the same
settings, Redis client, toolbox, middleware (logging, metrics, idempotency inbox,
retries), health server and drain as any unit. The handler records, per event,
``time.time()`` at its end minus the publish timestamp the publisher put in the event's
``subject``; the process writes the figures (float64 seconds) to ``$BENCH_LATENCY_OUT``
at exit. With ``BENCH_PROBES=1`` it also records, by wrapping internals from outside
(bench only), the event-loop lag, GC pauses, each delivery's wait for its inbox claim,
its completion and its ack write, and the inbox's Redis round trips; written as JSON to
``$BENCH_PROBE_OUT``.
"""

from __future__ import annotations

import asyncio
import atexit
import gc
import json
import os
import sys
import time
from array import array
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bus.router import Router
from schemas.events import DeploymentRequested
from workers.units import UNITS, Unit

router = Router("bench")
LATENCIES = array("d")


@router.subscribe("deployment.requested", name="bench")
async def noop(payload: DeploymentRequested, ctx: Any) -> None:
    """Does nothing but note when it finished."""
    LATENCIES.append(time.time() - float(ctx.event.subject))


class Probes:
    """Bench-only measurements taken by wrapping the worker's internals."""

    def __init__(self) -> None:
        self.series: dict[str, array[float]] = {}

    def add(self, name: str, value: float) -> None:
        """One observation, stamped with the wall-clock time (pairs: time, value)."""
        a = self.series.setdefault(name, array("d"))
        a.append(time.time())
        a.append(value)

    def timed(self, owner: Any, attr: str, name: str) -> None:
        """Record how long each call of the coroutine method ``owner.attr`` takes."""
        original: Callable[..., Any] = getattr(owner, attr)

        async def wrapper(*args: Any, **kwargs: Any) -> Any:
            t = time.perf_counter()
            try:
                return await original(*args, **kwargs)
            finally:
                self.add(name, time.perf_counter() - t)

        setattr(owner, attr, wrapper)

    def install(self) -> None:
        from bus.acks import ChannelAcks
        from bus.inbox import Inbox
        from bus.redis_batch import ScriptBatcher

        self.timed(Inbox, "claim", "claim_wait")
        self.timed(Inbox, "complete", "complete_wait")
        if hasattr(ScriptBatcher, "_execute"):  # the batcher before pipelining
            self.timed(ScriptBatcher, "_evalsha", "redis_round_trip")
            original_execute = ScriptBatcher._execute

            async def execute(batcher: Any, batch: Any) -> None:
                self.add("batch_size", len(batch))
                await original_execute(batcher, batch)

            ScriptBatcher._execute = execute  # type: ignore[method-assign,assignment]
        else:  # pipelined: a batch's round trip runs from its send to its reply
            from bus import redis_batch

            original_send = ScriptBatcher._send
            original_resolve = redis_batch._Batch.resolve
            sent: dict[int, float] = {}

            async def send(batcher: Any, pipe: Any, batch: Any) -> None:
                self.add("batch_size", len(batch.calls))
                sent[id(batch)] = time.perf_counter()
                await original_send(batcher, pipe, batch)

            def resolve(batch: Any, results: Any) -> None:
                t = sent.pop(id(batch), None)
                if t is not None:
                    self.add("redis_round_trip", time.perf_counter() - t)
                original_resolve(batch, results)

            ScriptBatcher._send = send  # type: ignore[method-assign,assignment]
            redis_batch._Batch.resolve = resolve  # type: ignore[method-assign,assignment]

        # ack write: from the ack being recorded to the end of the write that sent it
        stamps: dict[int, float] = {}
        original_ack, original_write = ChannelAcks.ack, ChannelAcks._write_all

        def ack(acks: Any, tag: int) -> None:
            stamps[tag] = time.perf_counter()
            original_ack(acks, tag)

        async def write_all(acks: Any) -> None:
            await original_write(acks)
            now = time.perf_counter()
            for tag in list(stamps):
                self.add("ack_write_wait", now - stamps.pop(tag))

        ChannelAcks.ack = ack  # type: ignore[method-assign,assignment]
        ChannelAcks._write_all = write_all  # type: ignore[method-assign,assignment]

        gc_start: list[float] = [0.0]

        def on_gc(phase: str, info: dict[str, Any]) -> None:
            if phase == "start":
                gc_start[0] = time.perf_counter()
            else:
                self.add(f"gc_gen{info['generation']}", time.perf_counter() - gc_start[0])

        gc.callbacks.append(on_gc)

        # Loop lag: a task asking to wake every 5 ms notes how late it is woken.
        from workers import app

        original_run = app.run_unit

        async def run_unit(*args: Any, **kwargs: Any) -> None:
            async def lag() -> None:
                while True:
                    t = time.perf_counter()
                    await asyncio.sleep(0.005)
                    self.add("loop_lag", time.perf_counter() - t - 0.005)

            task = asyncio.get_running_loop().create_task(lag())
            try:
                await original_run(*args, **kwargs)
            finally:
                task.cancel()

        app.run_unit = run_unit  # type: ignore[assignment]

    def dump(self, path: str) -> None:
        """Every series as [time, value, time, value, ...] (the bench keeps its window)."""
        out = {name: list(values) for name, values in self.series.items()}
        out["heap_objects"] = [time.time(), float(len(gc.get_objects()))]
        with open(path, "w") as f:
            json.dump(out, f)


def main() -> None:
    from workers.toolbox import UNIT_ROLES

    UNITS["bench"] = Unit("bench", "benchmark: a no-op handler", (f"{__name__}:router",))
    UNIT_ROLES["bench"] = []  # a role with no tools
    out = os.environ["BENCH_LATENCY_OUT"]
    atexit.register(Path(out).write_bytes, LATENCIES)
    if os.environ.get("BENCH_PROBES") == "1":
        probes = Probes()
        probes.install()
        atexit.register(probes.dump, os.environ["BENCH_PROBE_OUT"])

    from workers.cli import main as codebus

    sys.argv = ["codebus", "worker", "bench", *sys.argv[1:]]
    codebus()


if __name__ == "__main__":
    main()
