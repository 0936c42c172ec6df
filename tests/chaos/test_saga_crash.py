"""Crash safety of sagas: a real ``workflows`` worker process is SIGKILLed repeatedly
while 20 sagas run (half of them fail at their last step and compensate), and restarted.

Every saga must end completed or compensated (none stranded), and no forward step or
compensation may take effect twice: the API-server stand-in counts, per object, how
often it was created and deleted (a repeat of an apply or delete after a crash changes
nothing and is not an effect; a forward step re-run after its compensation, or a
compensation applied twice, would be). Raw request counts show the kills interrupted work.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from bus.rabbitmq import RabbitBroker
from flows.pipeline import run_id
from flows.pipeline_store import WorkflowStore
from schemas.envelope import new_event
from schemas.names import Names
from tests import reports
from tests.bus.conftest import delete_rabbit_topology
from tests.tools.adapters.k8s_apiserver import FakeApiServer, serve
from tests.tools.adapters.k8s_state import ApiState, Resource
from workers.units import UNITS

pytestmark = [pytest.mark.timeout(300), pytest.mark.redis, pytest.mark.rabbitmq]

ROOT = Path(__file__).resolve().parents[2]
SAGAS = 20
KILLS = 4
NAMESPACE = "crash"
TERMINAL = ("succeeded", "compensated", "compensation_failed")


class CountingState(ApiState):
    """The stand-in's object store, counting the writes that changed what exists."""

    def __init__(self) -> None:
        super().__init__()
        self.created: Counter[str] = Counter()
        self.deleted: Counter[str] = Counter()

    def write(self, res: Resource, namespace: str | None, new: dict[str, Any]) -> dict[str, Any]:
        name = new["metadata"]["name"]
        if self.get(res, namespace, name) is None:
            self.created[name] += 1
        return super().write(res, namespace, new)

    def delete(self, res: Resource, namespace: str | None, name: str) -> dict[str, Any]:
        gone = super().delete(res, namespace, name)
        self.deleted[name] += 1
        return gone


def configmap(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name},
        "data": {"owner": "${run}"},
    }


def spec() -> dict[str, Any]:
    """Three steps, each a ConfigMap apply undone by a delete; the third step's namespace
    comes from the input, and an invalid one fails the step (never retried)."""
    steps = []
    for part in ("a", "b", "c"):
        steps.append(
            {
                "name": f"make-{part}",
                "tool": "kubernetes.kubectl_apply",
                "args": {
                    "namespace": "${ns_c}" if part == "c" else NAMESPACE,
                    "objects": [configmap(f"${{run}}-{part}")],
                },
                "retry": {"attempts": 5, "backoff": 0.2},
                "compensate": {
                    "tool": "kubernetes.kubectl_delete",
                    "args": {
                        "resource_type": "configmap",
                        "name": f"${{run}}-{part}",
                        "namespace": NAMESPACE,
                    },
                    "retry": {"attempts": 5, "backoff": 0.2},
                },
            }
        )
    return {"kind": "saga", "name": "crash", "inputs": ["run", "ns_c"], "steps": steps}


def start_worker(amqp_url: str, redis_url: str, prefix: str, k8s_url: str) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.chaos.saga_crash_worker",
            amqp_url,
            redis_url,
            prefix,
            k8s_url,
            "test-token",
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line.strip() == "ready", f"worker did not start: {line}{proc.stdout.read()}"
    return proc


async def test_sigkilled_worker_during_20_sagas(
    amqp_url: str, redis_url: str, redis_client: Any, names: Names
) -> None:
    rng = random.Random(20)
    state = CountingState()
    api = FakeApiServer(state=state, delay=0.02)  # work in flight for the kills to interrupt
    runner, k8s_url = await serve(api)
    broker = RabbitBroker(amqp_url, names=names)
    await broker.connect()
    subscriptions = UNITS["workflows"].subscriptions()
    queues = [names.subscription_queue(s.name) for s in subscriptions]
    # The unit's queues exist before the first request (as after `codebus topology
    # --declare`), and something is bound for the events runs publish (the audit unit in
    # production).
    for sub in subscriptions:
        await broker.declare_queue(names.subscription_queue(sub.name), sub.patterns)
    published = [
        "workflow.started",
        "workflow.step_completed",
        "workflow.completed",
        "workflow.failed",
        "workflow.command_rejected",
        "saga.#",
    ]
    await broker.declare_queue(names.subscription_queue("crash.sink"), published)
    failing = {f"s{i:02d}" for i in range(0, SAGAS, 2)}
    proc = start_worker(amqp_url, redis_url, names.prefix, k8s_url)
    kills = 0
    ids: dict[str, str] = {}
    try:
        for i in range(SAGAS):
            run = f"s{i:02d}"
            data = {"run": run, "ns_c": "Not_A_Namespace" if run in failing else NAMESPACE}
            request = new_event("workflow.run_requested", {"spec": spec(), "data": data})
            await broker.publish(request)
            ids[run] = run_id(request.id, "saga")
        store = WorkflowStore(redis_client, names)
        for _ in range(KILLS):
            await asyncio.sleep(rng.uniform(0.4, 1.2))
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            kills += 1
            proc = start_worker(amqp_url, redis_url, names.prefix, k8s_url)

        deadline = time.monotonic() + 120
        phases: dict[str, str] = {}
        while time.monotonic() < deadline:
            for run, flow_id in ids.items():
                found = await store.load(flow_id)
                phases[run] = found.phase if found is not None else "missing"
            if all(
                p in ("succeeded", "compensated", "compensation_failed") for p in phases.values()
            ):
                break
            await asyncio.sleep(0.2)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        await runner.cleanup()

    wanted = {run: "compensated" if run in failing else "succeeded" for run in ids}
    stranded = sorted(
        run
        for run, p in phases.items()
        if p not in ("succeeded", "compensated", "compensation_failed")
    )
    lost = sorted(run for run, p in phases.items() if p == "missing")
    wrong = sorted(run for run in ids if phases.get(run) != wanted[run])
    twice = sorted(
        [f"created {n} x{c}" for n, c in state.created.items() if c > 1]
        + [f"deleted {n} x{c}" for n, c in state.deleted.items() if c > 1]
    )
    expected_objects = {f"{r}-{p}" for r in ids for p in "abc" if r not in failing}
    present = {name for (_res, _ns, name) in state.objects}
    leftovers = sorted(present ^ expected_objects)
    requests = Counter(r.method for r in api.requests if "/configmaps/" in r.path)
    effects = sum(state.created.values()) + sum(state.deleted.values())
    repeats = requests["PATCH"] + requests["DELETE"] - effects  # re-run after a kill
    figures = (
        f"sagas={SAGAS} kills={kills} lost={len(lost)} stranded={len(stranded)} "
        f"duplicated_side_effects={len(twice)} wrong_end={len(wrong)} leftovers={len(leftovers)} "
        f"configmap_requests={dict(requests)} harmless_repeats={repeats}"
    )
    print(figures)
    reports.report("saga crash test", figures)
    await broker.close()
    await delete_rabbit_topology(amqp_url, names, [*queues, names.subscription_queue("crash.sink")])
    assert kills == KILLS
    assert not lost and not stranded, (figures, phases)
    assert not twice, (figures, twice)
    assert not wrong, (figures, {r: phases[r] for r in wrong})
    assert not leftovers, (figures, leftovers)
