"""Inbox outcomes (live Redis, and a Redis that is not there), flow phase transitions,
timer lateness and live flows per phase (a canary rollout in the embedded system), and
``promtool check metrics`` on every new name."""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
from prometheus_client import CollectorRegistry, generate_latest

from bus.errors import InboxUnavailable
from bus.inbox import AlreadyDone, Busy, Claimed, LeaseLost
from bus.inbox_metrics import CountingInbox, InboxOutcomes
from flows import metrics as flow_metrics
from flows.metrics import LIVE_PHASES, FlowMetrics
from tests.flows.test_strategies_embedded import deploy, until
from tests.flows.test_sweeper import config
from tests.ops.test_worker_metrics import free_port, promtool
from workers.embedded import EmbeddedSystem

pytestmark = pytest.mark.timeout(60)


def value(registry: CollectorRegistry, name: str, **labels: str) -> float:
    got = registry.get_sample_value(name, labels)
    return 0.0 if got is None else got


async def test_inbox_outcomes_are_counted(redis_client, names) -> None:
    registry = CollectorRegistry()
    outcomes = InboxOutcomes(registry)
    inbox = CountingInbox(redis_client, names, lease=0.2, retention=60, outcomes=outcomes)
    short = CountingInbox(redis_client, names, lease=0.1, retention=60, outcomes=outcomes)
    try:
        claim = await inbox.claim("sub", "e1")
        assert isinstance(claim, Claimed)
        assert isinstance(await inbox.claim("sub", "e1"), Busy)
        assert await inbox.complete(claim) is True
        assert isinstance(await inbox.claim("sub", "e1"), AlreadyDone)
        # A lease that expires and is taken by another delivery: the first loses it.
        lost = await short.claim("sub", "e2")
        assert isinstance(lost, Claimed)
        short._drop(lost)  # no lease extension, as if the process stalled
        await asyncio.sleep(0.3)
        taker = await inbox.claim("sub", "e2")
        assert isinstance(taker, Claimed)
        with pytest.raises(LeaseLost):
            await short.complete(lost)
        await inbox.release(taker)
    finally:
        await inbox.aclose()
        await short.aclose()
    # Redis not there: the claim fails closed and is counted.
    gone = aioredis.Redis(port=free_port(), socket_connect_timeout=0.5)
    dead = CountingInbox(gone, names, outcomes=outcomes)
    with pytest.raises(InboxUnavailable):
        await dead.claim("sub", "e3")
    await dead.aclose()
    await gone.aclose()
    got = {
        (op, o): value(registry, "codebus_inbox_outcomes_total", operation=op, outcome=o)
        for op, o in outcomes.children
    }
    assert {k: v for k, v in got.items() if v} == {
        ("claim", "claimed"): 3,
        ("claim", "busy"): 1,
        ("claim", "duplicate"): 1,
        ("claim", "unavailable"): 1,
        ("complete", "done"): 1,
        ("complete", "lease_lost"): 1,
    }


async def test_flow_phases_and_timer_lateness_of_a_canary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fm = FlowMetrics()
    monkeypatch.setattr(flow_metrics, "_default", fm)
    async with EmbeddedSystem(flows_config=config(tmp_path), sweep_interval=0.2) as system:
        await until(system, await deploy(system, tmp_path, "1.0", "canary"), "succeeded")
        flow = await deploy(system, tmp_path, "2.0", "canary")
        done = await until(system, flow, "succeeded")
        await asyncio.sleep(0.5)  # a sweep after the end
    r = fm.registry
    phases = [(j["frm"], j["to"]) for j in done.journal if j["kind"] == "phase"]
    assert phases  # the canary moved through phases
    for frm, to in phases:
        assert value(r, "codebus_flow_phase_transitions_total", from_phase=frm, to_phase=to) >= 1
    timers = [j for j in done.journal if j["kind"] == "timer"]
    assert timers
    for name in {j["timer"] for j in timers}:
        count = value(r, "codebus_flow_timer_lateness_seconds_count", timer=name)
        assert count >= len([j for j in timers if j["timer"] == name])
    # The last sweep saw no live flow: every live phase reads 0, and is present.
    assert all(r.get_sample_value("codebus_flows_in_phase", {"phase": p}) == 0 for p in LIVE_PHASES)


def test_flow_metrics_read_only_the_entries_of_this_decision() -> None:
    from tests.flows.helpers import new_state

    state: Any = new_state()
    state = state.model_copy(
        update={
            "journal": [
                {"at": 1.0, "kind": "phase", "frm": "pending", "to": "progressing"},
                {"at": 2.0, "kind": "phase", "frm": "progressing", "to": "paused"},
                {"at": 2.0, "kind": "timer", "timer": "step", "late": 0.25},
            ]
        }
    )
    fm = FlowMetrics()
    fm.observe_decision(state, 2.0)
    r = fm.registry
    assert (
        value(
            r, "codebus_flow_phase_transitions_total", from_phase="progressing", to_phase="paused"
        )
        == 1
    )
    assert (
        value(
            r, "codebus_flow_phase_transitions_total", from_phase="pending", to_phase="progressing"
        )
        == 0
    )
    assert value(r, "codebus_flow_timer_lateness_seconds_sum", timer="step") == 0.25
    fm.observe_sweep(["paused", "paused", "progressing"])
    assert value(r, "codebus_flows_in_phase", phase="paused") == 2


def test_new_metric_names_pass_promtool() -> None:
    tool = promtool()
    registry = CollectorRegistry()
    outcomes = InboxOutcomes(registry)
    outcomes.inc("claim", "claimed")
    fm = FlowMetrics(registry)
    fm.transitions.labels("pending", "progressing").inc()
    fm.lateness.labels("step").observe(0.3)
    fm.observe_sweep(["paused"])
    text = generate_latest(registry).decode()
    for name in (
        "codebus_inbox_outcomes_total{",
        "codebus_flow_phase_transitions_total{",
        "codebus_flow_timer_lateness_seconds_bucket{",
        "codebus_flows_in_phase{",
    ):
        assert name in text
    check = subprocess.run(
        [tool, "check", "metrics"], input=text, capture_output=True, text=True, timeout=60
    )
    assert (check.returncode, check.stdout + check.stderr) == (0, "")
