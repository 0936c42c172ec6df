"""Crash safety of flows: a real worker process (deploy + security units) SIGKILLed at
random moments while 20 canaries run concurrently, restarted each time, against the live
RabbitMQ and Redis and the strict Kubernetes stand-in (which outlives the worker).

Figures: lost flows (a request without a flow), stranded flows (not terminal at the end),
duplicated side effects (a Deployment's sequence of state-changing writes differs from
the plan: a step applied again after a later one), and the harmless repeats of absolute
writes (a step re-run after a crash between the tool call and the recorded result).
"""

# The harness reads a small local log file and starts processes from the test's loop
# on purpose (the stand-in API server shares the loop and must keep serving).
# ruff: noqa: ASYNC220, ASYNC240

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from bus.rabbitmq import RabbitBroker
from flows.pipeline_facade import facade_run_id
from flows.pipeline_store import WorkflowStore
from flows.store import FlowStore
from handlers.deployment import mint_flow_id
from schemas.envelope import new_event
from schemas.names import Names
from tests import reports
from tests.flows.helpers import deployment, service
from tests.flows.live import write_manifests
from tests.tools.adapters.k8s_apiserver import FakeApiServer, serve
from tools.adapters.kubernetes import KubernetesServer
from tools.adapters.kubernetes_client import KubernetesConfig

ROOT = Path(__file__).resolve().parents[2]
FLOWS = 20
KILLS = 4

pytestmark = [pytest.mark.slow, pytest.mark.timeout(420)]


async def start_worker(args: list[str], log: Path) -> subprocess.Popen[bytes]:
    """Start the worker (output appended to ``log``: a full pipe would stall it)."""
    before = log.stat().st_size if log.exists() else 0
    with log.open("ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "tests.flows.crash_flows_worker", *args],
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
    deadline = time.monotonic() + 90  # imports alone take 20 s on a loaded CI machine
    while b"ready" not in log.read_bytes()[before:]:
        assert proc.poll() is None, log.read_bytes()[before:].decode(errors="replace")[-3000:]
        assert time.monotonic() < deadline, "worker did not start"
        await asyncio.sleep(0.05)  # the stand-in API server shares this loop: keep serving
    return proc


def writes(api: FakeApiServer, ns: str, name: str) -> list[tuple[int | None, str | None]]:
    """Every write to one Deployment, in order: (replicas, image) it asked for."""
    base = f"/apis/apps/v1/namespaces/{ns}/deployments/{name}"
    out: list[tuple[int | None, str | None]] = []
    for r in api.requests:
        if r.method != "PATCH" or r.query.get("dryRun"):
            continue
        if r.path == base + "/scale":
            out.append((int(json.loads(r.body)["spec"]["replicas"]), None))
        elif r.path == base:
            body = json.loads(r.body)
            if isinstance(body, list):  # rollout undo: a JSON patch of the template
                out.append((None, "undo"))
                continue
            image = body["spec"]["template"]["spec"]["containers"][0]["image"]
            out.append((int(body["spec"]["replicas"]), image))
    return out


def collapse(seq: list[tuple[int | None, str | None]]) -> list[tuple[int | None, str | None]]:
    """Consecutive identical writes are one change (an absolute write repeated)."""
    out: list[tuple[int | None, str | None]] = []
    for item in seq:
        if not out or out[-1] != item:
            out.append(item)
    return out


async def test_sigkill_during_concurrent_canaries(
    amqp_url: str, redis_url: str, redis_client: Any, names: Names, tmp_path: Path
) -> None:
    api = FakeApiServer()
    runner, url = await serve(api)
    apps = [f"app{i:02d}" for i in range(FLOWS)]
    # The first release of every app, as stable (set up through the real adapter).
    adapter = KubernetesServer(KubernetesConfig(host=url, token=api.token, verify_ssl=False))  # type: ignore[arg-type]
    await adapter.start()
    from schemas.tools.kubernetes import KubectlApplyArgs

    for app in apps:
        objects = [deployment(app, f"{app}:1.0", 4), service(app)]
        await adapter.kubectl_apply(KubectlApplyArgs(objects=objects, namespace=f"{app}-staging"))
    await adapter.close()
    setup_requests = len(api.requests)

    args = [amqp_url, redis_url, names.prefix, url, api.token, str(tmp_path)]
    broker = RabbitBroker(amqp_url, names=names)
    await broker.connect()
    log = tmp_path / "worker.log"
    proc = await start_worker(args, log)
    rng = random.Random(9)
    kills = 0
    events = []
    try:
        for app in apps:
            data = {
                "app": app,
                "version": "2.0",
                "environment": "staging",
                "strategy": "canary",
                "manifest_path": write_manifests(tmp_path, app, "2.0"),
            }
            events.append(new_event("deployment.requested", data))
        await asyncio.gather(*(broker.publish(e) for e in events))
        for _ in range(KILLS):
            await asyncio.sleep(rng.uniform(0.5, 2.0))
            proc.send_signal(signal.SIGKILL)
            while proc.poll() is None:
                await asyncio.sleep(0.01)
            kills += 1
            proc = await start_worker(args, log)
        store = FlowStore(redis_client, names)
        run_store = WorkflowStore(redis_client, names)
        ids = [mint_flow_id("deploy.requested", e.id) for e in events]
        deadline = time.monotonic() + 240
        states: dict[str, Any] = {}
        runs: dict[str, Any] = {}
        while time.monotonic() < deadline:
            states = {i: await store.load(i) for i in ids}
            # ... and the deploy pipeline's run around each flow (notify step included)
            runs = {i: await run_store.load(facade_run_id(i)) for i in ids}
            if all(s is not None and s.terminal and not s.outbox for s in states.values()) and all(
                r is not None and r.terminal for r in runs.values()
            ):
                break
            await asyncio.sleep(0.2)
        elapsed = time.monotonic() - deadline + 240
        dead = await broker.depth(names.dead_letter_queue)
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:  # a slow drain on a loaded machine; not the point
            proc.kill()
            proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        await runner.cleanup()

    for s in states.values():
        if s is not None and s.phase != "succeeded":
            print("not succeeded:", s.id, s.app, s.phase, s.step, s.reason)
            for j in s.journal[-60:]:
                print("   J", j)
            from tests.tools.adapters.k8s_state import by_kind

            ns = f"{s.app}-staging"
            for kind in ("Deployment", "ReplicaSet"):
                for obj in api.state.select(by_kind(kind), ns):
                    print(
                        " ",
                        kind,
                        obj["metadata"]["name"],
                        obj["metadata"].get("generation"),
                        obj["spec"]["replicas"],
                        obj.get("status"),
                    )
    runs_stranded = sum(1 for r in runs.values() if r is None or not r.terminal)
    run_phases = sorted({r.phase for r in runs.values() if r is not None})
    lost = sum(1 for s in states.values() if s is None)
    stranded = sum(1 for s in states.values() if s is not None and not s.terminal)
    phases = sorted({s.phase for s in states.values() if s is not None})
    duplicated, repeats = 0, 0
    expected = {
        "canary": [(0, "{app}:2.0"), (1, None), (2, None), (0, None)],
        "stable": [(3, None), (2, None), (4, "{app}:2.0")],
    }
    for app in apps:
        ns = f"{app}-staging"
        for name, want in ((f"{app}-canary", "canary"), (app, "stable")):
            seq = writes(api, ns, name)
            if name == app:
                seq = seq[1:]  # the setup's first release
            plan = [(r, i.format(app=app) if i else None) for r, i in expected[want]]
            repeats += len(seq) - len(collapse(seq))
            if collapse(seq) != plan:
                duplicated += 1
                print("unexpected writes", name, seq, "plan", plan)
    await broker.close()
    figures = (
        f"flows={FLOWS} kills={kills} lost={lost} stranded={stranded} "
        f"duplicated_side_effects={duplicated} repeated_absolute_writes={repeats} "
        f"dead_letters={dead} phases={','.join(phases)} "
        f"pipeline_runs_stranded={runs_stranded} run_phases={','.join(run_phases)} "
        f"k8s_requests={len(api.requests) - setup_requests} seconds={elapsed:.1f}"
    )
    print(figures)
    reports.report("flow crash test", figures)
    assert kills == KILLS
    assert lost == 0 and stranded == 0, figures
    assert phases == ["succeeded"], figures
    assert runs_stranded == 0 and run_phases == ["succeeded"], figures
    assert duplicated == 0, figures
    assert dead == 0, figures
