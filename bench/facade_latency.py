"""Benchmark: what the deploy facade costs per deployment, on the embedded system.

    python bench/facade_latency.py [--deployments 30] [--concurrency 5]

Runs ``--deployments`` rolling deployments (build, scan, apply, wait until ready) through
the ``deploy``, ``security``, ``notify`` and ``audit`` units on the in-memory broker,
fakeredis and the fake tool servers, ``--concurrency`` at a time, and prints the time from
``deployment.requested`` to ``deployment.completed`` (p50 / p95 / max) and the events
published per deployment. The fakes answer at once, so this is codebus's own overhead:
deliveries, Redis round trips, records. Run it on two checkouts to compare (the facade as
a declared pipeline against the hand-coded chain: ``PYTHONPATH=<checkout>``).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path

from schemas.envelope import new_event
from schemas.flows import FlowsConfig, RollingSpec, StrategySpec
from workers.embedded import EmbeddedSystem

MANIFEST = """\
apiVersion: apps/v1
kind: Deployment
metadata: {name: APP}
spec:
  replicas: 2
  selector: {matchLabels: {app: APP}}
  template:
    metadata: {labels: {app: APP}}
    spec: {containers: [{name: APP, image: "APP:1.0"}]}
"""


async def main(deployments: int, concurrency: int) -> None:
    root = Path(tempfile.mkdtemp(prefix="codebus-bench-"))
    (root / "Dockerfile").write_text("FROM scratch\n")
    config = FlowsConfig(
        manifest_roots=(str(root),),
        allow_unlisted_apps=True,
        default=StrategySpec(rolling=RollingSpec(progress_deadline=30.0, poll_interval=0.01)),
    )
    done: dict[str, float] = {}
    async with EmbeddedSystem(flows_config=config, sweep_interval=1.0) as system:
        gate = asyncio.Semaphore(concurrency)

        async def one(n: int) -> float:
            app = f"app{n}"
            (root / f"{app}.yaml").write_text(MANIFEST.replace("APP", app))
            data = {
                "app": app,
                "version": "1.0",
                "environment": "staging",
                "context_path": str(root),
                "manifest_path": str(root / f"{app}.yaml"),
            }
            async with gate:
                ev = new_event("deployment.requested", data)
                start = time.perf_counter()
                await system.broker.publish(ev)
                while not any(
                    e.correlationid == ev.id for e in system.of_type("deployment.completed")
                ):
                    await asyncio.sleep(0.002)
                return time.perf_counter() - start

        wall = time.perf_counter()
        took = await asyncio.gather(*(one(n) for n in range(deployments)))
        wall = time.perf_counter() - wall
        await system.settle()
        events = len(system.events) / deployments
        done = {"p50": statistics.median(took), "max": max(took)}
        done["p95"] = sorted(took)[max(0, int(len(took) * 0.95) - 1)]
    print(
        f"deployments={deployments} concurrency={concurrency} "
        f"requested->completed p50={done['p50'] * 1000:.0f}ms p95={done['p95'] * 1000:.0f}ms "
        f"max={done['max'] * 1000:.0f}ms events_per_deployment={events:.1f} wall={wall:.1f}s"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--deployments", type=int, default=30)
    parser.add_argument("--concurrency", type=int, default=5)
    args = parser.parse_args()
    asyncio.run(main(args.deployments, args.concurrency))
