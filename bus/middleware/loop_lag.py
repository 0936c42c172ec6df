"""Event-loop lag and garbage-collector pauses as Prometheus metrics.

Every delivery of a worker process shares one event loop: anything that holds it (a
long callback, a GC pass over a large heap, the process being descheduled on a busy
host) delays all of them at once, and shows up as a latency tail that no per-handler
timing explains. A probe task asks to wake every ``interval`` seconds and records how
late it was woken; a ``gc.callbacks`` hook records each collection's pause.

Installed as middleware only for its lifecycle (``on_start`` / ``on_stop``): it has no
per-delivery hooks, so it costs the delivery path nothing.
"""

from __future__ import annotations

import asyncio
import gc
import time
from typing import Any

from prometheus_client import REGISTRY, CollectorRegistry, Histogram

from bus.middleware.base import Middleware

#: Buckets from "healthy" (well under a millisecond) to "stalled".
LAG_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class LoopLagMonitor(Middleware):
    """``codebus_event_loop_lag_seconds`` and ``codebus_gc_pause_seconds{generation}``."""

    def __init__(self, registry: CollectorRegistry = REGISTRY, *, interval: float = 0.025):
        if interval <= 0:
            raise ValueError("interval must be positive")
        self.interval = interval
        self.lag = Histogram(
            "codebus_event_loop_lag_seconds",
            "How late the event loop ran a callback that was due (sampled)",
            registry=registry,
            buckets=LAG_BUCKETS,
        )
        self.gc_pause = Histogram(
            "codebus_gc_pause_seconds",
            "Pauses of the garbage collector, by generation collected",
            ["generation"],
            registry=registry,
            buckets=LAG_BUCKETS,
        )
        self._gc_children = [self.gc_pause.labels(str(g)) for g in range(3)]
        self._gc_started = 0.0
        self._task: asyncio.Task[None] | None = None

    async def on_start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._probe())
            gc.callbacks.append(self._on_gc)

    async def on_stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None
            gc.callbacks.remove(self._on_gc)

    async def _probe(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            due = loop.time() + self.interval
            await asyncio.sleep(self.interval)
            self.lag.observe(max(0.0, loop.time() - due))

    def _on_gc(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._gc_started = time.perf_counter()
        else:
            self._gc_children[info["generation"]].observe(time.perf_counter() - self._gc_started)


class FreezeStartupHeap(Middleware):
    """Moves everything alive when the worker starts out of the garbage collector's
    reach (``gc.freeze``), after one last full collection.

    A worker process imports its whole toolbox (Kubernetes, S3, Docker clients ...):
    about 130,000 tracked objects, which every full (generation 2) collection traverses
    again - 120-130 ms of CPU each on a 2-core test machine, enough to stall every
    delivery in flight and to make a steady-load p99 of 100+ ms
    (docs/benchmarks.md). Those objects live as long as the process, so scanning them
    finds nothing; frozen, a full collection only walks what was allocated since.
    ``on_stop`` unfreezes, so a process that runs workers one after another (tests,
    the embedded demo) does not keep their garbage for ever.
    """

    async def on_start(self) -> None:
        gc.collect()
        gc.freeze()

    async def on_stop(self) -> None:
        gc.unfreeze()
