"""Sagas on both brokers: compensations recorded before the next step, run in reverse,
retried; a failing compensation does not stop the others, is published, and the saga
ends in compensation_failed until ``saga.compensate_requested`` re-runs it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from flows.pipeline import Outcome, advance, new_run, recompensate
from schemas.names import Names
from schemas.workflows import WorkflowSpec
from tests.flows.pipeline_support import Running, running_workflows

pytestmark = [pytest.mark.timeout(90), pytest.mark.redis]


def saga(*names: str) -> dict[str, Any]:
    """Steps ``ops.do key=<name>``, each undone by ``ops.undo`` with the value the step
    produced (rendered from the context when the step completed)."""
    return {
        "kind": "saga",
        "name": "provision",
        "inputs": ["app"],
        "steps": [
            {
                "name": name,
                "tool": "ops.do",
                "args": {"key": name, "value": f"${{app}}-{name}"},
                "outputs": {f"{name}_made": "value"},
                "compensate": {
                    "tool": "ops.undo",
                    "args": {"key": name, "value": f"${{{name}_made}}"},
                    "retry": {"attempts": 2, "backoff": 0.05},
                },
            }
            for name in names
        ],
    }


@pytest.fixture(params=["memory", "rabbitmq"])
async def unit(
    request: pytest.FixtureRequest, redis_client: Any, names: Names
) -> AsyncIterator[Running]:
    async with running_workflows(request.param, redis_client, names) as running:
        yield running


def undo_order(unit: Running) -> list[str]:
    return [key for op, key, _ in unit.ops.calls if op == "undo"]


def test_the_compensation_is_recorded_in_the_write_that_starts_the_next_step() -> None:
    spec = WorkflowSpec.model_validate(saga("db", "backend"))
    state, _ = new_run("s-1", spec, {"app": "web"}, 0.0)
    state, messages = advance(state, Outcome(ok=True, result={"value": "web-db"}), 1.0)
    assert state.index == 1 and messages[-1].type == "workflow.step_due"
    (comp,) = state.compensations
    assert (comp.step, comp.tool, comp.args, comp.status) == (
        "db",
        "ops.undo",
        {"key": "db", "value": "web-db"},
        "pending",
    )


def test_compensate_applies_only_to_a_saga_that_needs_it() -> None:
    spec = WorkflowSpec.model_validate(saga("db"))
    state, _ = new_run("s-1", spec, {"app": "web"}, 0.0)
    assert "only a saga in compensation_failed" in str(recompensate(state, "ops", 1.0))


async def test_a_failed_step_is_undone_in_reverse_order(unit: Running) -> None:
    unit.ops.broken.add("do:dns")
    flow_id = await unit.run(saga("db", "backend", "cache", "dns"), {"app": "web"})
    state = await unit.until_phase(flow_id, "compensated")
    assert undo_order(unit) == ["cache", "backend", "db"]
    # Each compensation got what its step produced.
    undo_values = {key: value for op, key, value in unit.ops.calls if op == "undo"}
    assert undo_values == {"cache": "web-cache", "backend": "web-backend", "db": "web-db"}
    (report,) = await unit.wait_for(lambda: unit.of_type("workflow.failed"))
    assert (report.data["failed_step"], report.data["kind"]) == ("dns", "saga")
    (finished,) = await unit.wait_for(lambda: unit.of_type("saga.finished"))
    assert finished.data == {
        "flow_id": flow_id,
        "name": "provision",
        "phase": "compensated",
        "failed": [],
    }
    assert [c.status for c in state.compensations] == ["done", "done", "done"]
    record = await unit.repo.get(flow_id)
    assert record is not None and record.phase == "compensated"
    assert record.reason == "dns: ops.do: do:dns: broken"


async def test_a_failing_compensation_is_published_and_the_others_still_run(
    unit: Running,
) -> None:
    unit.ops.broken |= {"do:dns", "undo:backend"}
    unit.ops.transient["undo:cache"] = 1  # retried once, then fine
    flow_id = await unit.run(saga("db", "backend", "cache", "dns"), {"app": "web"})
    state = await unit.until_phase(flow_id, "compensation_failed")
    assert undo_order(unit) == ["cache", "cache", "backend", "backend", "db"]
    (failed,) = await unit.wait_for(lambda: unit.of_type("saga.compensation_failed"))
    assert (failed.data["step"], failed.data["attempts"]) == ("backend", 2)
    assert "undo:backend: broken" in failed.data["error"]
    (finished,) = await unit.wait_for(lambda: unit.of_type("saga.finished"))
    assert (finished.data["phase"], finished.data["failed"]) == (
        "compensation_failed",
        ["backend"],
    )
    assert {c.step: c.status for c in state.compensations} == {
        "cache": "done",
        "backend": "failed",
        "db": "done",
    }
    record = await unit.repo.get(flow_id)
    assert record is not None and record.phase == "compensation_failed"

    # A person fixes the cause and asks again: only the failed one runs.
    unit.ops.broken.discard("undo:backend")
    await unit.publish("saga.compensate_requested", {"flow_id": flow_id, "by": "alice"})
    state = await unit.until_phase(flow_id, "compensated")
    assert undo_order(unit) == ["cache", "cache", "backend", "backend", "db", "backend"]
    assert dict(unit.ops.undone) == {"cache": 1, "backend": 1, "db": 1}
    assert any(e.get("by") == "alice" for e in state.journal if e["kind"] == "command")
    finished_all = await unit.wait_for(lambda: len(unit.of_type("saga.finished")) == 2)
    assert finished_all


async def test_a_compensate_command_in_the_wrong_phase_is_rejected(unit: Running) -> None:
    flow_id = await unit.run(saga("db"), {"app": "web"})
    await unit.until_phase(flow_id, "succeeded")
    await unit.publish("saga.compensate_requested", {"flow_id": flow_id})
    (rejected,) = await unit.wait_for(lambda: unit.of_type("workflow.command_rejected"))
    assert "is succeeded" in rejected.data["why"]
    assert not undo_order(unit)


async def test_a_failure_before_any_compensable_step_ends_compensated(unit: Running) -> None:
    unit.ops.broken.add("do:db")
    flow_id = await unit.run(saga("db", "backend"), {"app": "web"})
    state = await unit.until_phase(flow_id, "compensated")
    assert not state.compensations and not undo_order(unit)
    (report,) = await unit.wait_for(lambda: unit.of_type("workflow.failed"))
    assert report.data["failed_step"] == "db"
