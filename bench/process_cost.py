"""Cost of a codebus process (issue 11 item 6): start-up time of ``codebus --help`` and
resident memory of a worker, idle and after draining events.

    python -m bench.process_cost [--src DIR] [--events 20000] [--runs 20]

* ``codebus --help``: ``--runs`` timed runs after 3 warm-up runs (hyperfine-like: wall
  clock of the whole process, median and min reported); the same command line as the
  console script runs (``workers.cli:main``).
* ``codebus worker audit`` (the unit with no tools: what the worker itself costs)
  against a private RabbitMQ node and Redis (bench/private_services.py): RSS (VmRSS from
  /proc) once ready and idle, its peak (VmHWM) while draining ``--events`` events
  published before it started, and RSS once all are recorded in the audit stream.

``--src`` runs another checkout's code (e.g. ``git archive main | tar -x -C /tmp/main``)
to compare before and after; the events are published by this checkout's bus either way.
Results: docs/benchmarks.md, "Process cost".
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import redis

from bench.private_services import Services, free_port, private_services
from bus.rabbitmq import RabbitBroker
from schemas.envelope import new_event
from schemas.names import Names

ROOT = Path(__file__).resolve().parents[1]
CLI = "from workers.cli import main; main()"


def status(pid: int) -> dict[str, float]:
    """VmRSS and VmHWM of ``pid``, MiB."""
    out: dict[str, float] = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                out[key] = int(value.split()[0]) / 1024
    return out


def help_times(src: Path, runs: int) -> tuple[list[float], list[float]]:
    """Wall-clock and CPU (user + system) seconds of ``runs`` runs of ``codebus --help``
    (after 3 warm-ups). CPU time is what the start-up costs; wall time also holds the
    time the scheduler kept the process waiting, which on a loaded machine dominates."""
    env = {**os.environ, "PYTHONPATH": str(src)}
    wall: list[float] = []
    cpu: list[float] = []
    for i in range(runs + 3):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.perf_counter()
        subprocess.run(
            [sys.executable, "-c", CLI, "--help"], env=env, cwd=src, check=True,
            stdout=subprocess.DEVNULL,
        )  # fmt: skip
        elapsed = time.perf_counter() - t0
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        if i >= 3:
            wall.append(elapsed)
            cpu.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
    return wall, cpu


async def publish(svc: Services, names: Names, n: int) -> None:
    """``n`` events onto the bus (the audit unit's queue must exist)."""
    broker = RabbitBroker(svc.amqp_url, names=names)
    await broker.connect()
    try:
        for start in range(0, n, 500):
            await asyncio.gather(
                *(
                    broker.publish(
                        new_event(
                            "deployment.requested",
                            {"app": "web", "version": f"1.0.{i}"},
                            source="bench/process_cost",
                        )
                    )
                    for i in range(start, min(n, start + 500))
                )
            )
    finally:
        await broker.close()


def start_worker(src: Path, svc: Services, names: Names, port: int, cwd: str) -> subprocess.Popen:
    env = {
        **os.environ,
        "PYTHONPATH": str(src),
        "CODEBUS_AMQP_URL": svc.amqp_url,
        "CODEBUS_REDIS_URL": svc.redis_url,
        "CODEBUS_PREFIX": names.prefix,
        "CODEBUS_HTTP_HOST": "127.0.0.1",
        "CODEBUS_HTTP_PORT": str(port),
        "CODEBUS_LOG_LEVEL": "WARNING",
    }
    for key in ("CODEBUS_TOOLS_CONFIG", "CODEBUS_FAKE_TOOLS"):
        env.pop(key, None)
    return subprocess.Popen(
        [sys.executable, "-c", CLI, "worker", "audit"], env=env, cwd=cwd,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip


def wait_ready(proc: subprocess.Popen, port: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the worker exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.1)
    raise RuntimeError("the worker did not become ready")


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def worker_rss(src: Path, svc: Services, n: int) -> dict[str, float]:
    """Idle RSS, peak while draining ``n`` events, RSS after, and the drain time."""
    names = Names(prefix=f"pc{os.getpid()}x{time.monotonic_ns() % 10_000}")
    store = redis.Redis.from_url(svc.redis_url)
    with tempfile.TemporaryDirectory() as cwd:
        # Once to declare the unit's queue, idle RSS measured on a fresh process below.
        port = free_port()
        proc = start_worker(src, svc, names, port, cwd)
        try:
            wait_ready(proc, port)
        finally:
            stop(proc)
        asyncio.run(publish(svc, names, n))
        port = free_port()
        proc = start_worker(src, svc, names, port, cwd)
        try:
            # Ready = consuming: the backlog starts draining at once. Idle figures come
            # from a third, empty-queue start below.
            wait_ready(proc, port)
            t0 = time.monotonic()
            while store.xlen(names.event_log_stream) < n:
                if time.monotonic() - t0 > 600:
                    raise RuntimeError("the worker did not drain the events in 10 minutes")
                time.sleep(0.2)
            drained = time.monotonic() - t0
            time.sleep(2)
            after = status(proc.pid)
        finally:
            stop(proc)
        port = free_port()
        proc = start_worker(src, svc, names, port, cwd)
        try:
            wait_ready(proc, port)
            time.sleep(3)
            idle = status(proc.pid)
        finally:
            stop(proc)
    store.close()
    return {
        "idle": idle["VmRSS"],
        "peak": after["VmHWM"],
        "after": after["VmRSS"],
        "drain_s": drained,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--src", type=Path, default=ROOT, help="checkout to measure")
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--runs", type=int, default=20, help="timed runs of --help")
    args = parser.parse_args()
    src = args.src.resolve()
    wall, cpu = help_times(src, args.runs)
    print(
        f"codebus --help: median {statistics.median(wall):.3f} s, min {min(wall):.3f} s"
        f" wall; CPU median {statistics.median(cpu):.3f} s ({args.runs} runs, {src};"
        f" load average {os.getloadavg()[0]:.1f})",
        flush=True,
    )
    with private_services() as svc:
        rss = worker_rss(src, svc, args.events)
    print(
        f"codebus worker audit: RSS idle {rss['idle']:.1f} MiB; draining {args.events:,}"
        f" events (RabbitMQ quorum queue, Redis): peak {rss['peak']:.1f} MiB, after"
        f" {rss['after']:.1f} MiB; drained in {rss['drain_s']:.1f} s",
        flush=True,
    )


if __name__ == "__main__":
    main()
