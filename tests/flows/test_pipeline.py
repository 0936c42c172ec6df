"""Pipelines: spec validation (errors name the field), templates, and runs on both
brokers - step order, context passing, per-step retry and timeout, the failed-step
report as an event and as a repository record, one step per delivery."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from pydantic import ValidationError

from flows.pipeline import Outcome, advance, new_run, render
from schemas.names import HEADER_DEAD_REASON, Names
from schemas.workflows import RecordFilter, WorkflowSpec
from tests.flows.pipeline_support import Running, running_workflows

pytestmark = [pytest.mark.timeout(90), pytest.mark.redis]


def guide_pipeline(**scan: Any) -> dict[str, Any]:
    """The guide's validate -> build -> scan -> deploy -> notify, over the stand-in."""
    return {
        "kind": "pipeline",
        "name": "ship",
        "inputs": ["app", "version", "environment"],
        "steps": [
            {
                "name": "build",
                "tool": "ops.do",
                "args": {"key": "build", "value": "${app}:${version}"},
                "outputs": {"image": "value"},
            },
            {
                "name": "scan",
                "tool": "ops.scan",
                "args": {"key": "scan", "value": scan.get("found", 0)},
                "fail_if": {"field": "found", "condition": "result > 0"},
            },
            {
                "name": "deploy",
                "tool": "ops.do",
                "args": {"key": "deploy", "value": {"image": "${image}", "ns": "${environment}"}},
                "outputs": {"deployed": "value.image"},
            },
            {
                "name": "notify",
                "tool": "ops.do",
                "args": {"key": "notify", "value": "Deployed ${deployed}"},
            },
        ],
    }


DATA = {"app": "web", "version": "1.2.3", "environment": "staging"}


@pytest.fixture(params=["memory", "rabbitmq"])
async def unit(
    request: pytest.FixtureRequest, redis_client: Any, names: Names
) -> AsyncIterator[Running]:
    async with running_workflows(request.param, redis_client, names) as running:
        yield running


# ---- the spec --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda s: s["steps"].append(dict(s["steps"][0])), "steps.4.name: 'build' is used"),
        (
            lambda s: s["steps"][0].update(compensate={"tool": "ops.undo"}),
            "steps.0.compensate: pipelines do not compensate",
        ),
        (
            lambda s: s["steps"][2]["args"].update(key="${nope}"),
            "steps.2.args.key: ${nope} is neither an input nor an output",
        ),
        (lambda s: s["steps"][1].update(tool="ops"), "tool"),
        (lambda s: s["steps"][1]["fail_if"].update(condition="import os"), "condition"),
        (lambda s: s.update(steps=[]), "steps"),
        (lambda s: s["steps"][0].update(retry={"attempts": 0}), "attempts"),
        (lambda s: s.update(kind="dag"), "kind"),
    ],
)
def test_bad_specs_are_refused_naming_the_field(change: Any, message: str) -> None:
    spec = guide_pipeline()
    change(spec)
    with pytest.raises(ValidationError, match=message.replace("$", r"\$").replace(".", r"\.")):
        WorkflowSpec.model_validate(spec)


def test_an_output_used_before_its_step_is_refused() -> None:
    spec = guide_pipeline()
    spec["steps"][0]["args"]["value"] = "${image}"  # built by this very step
    with pytest.raises(ValidationError, match=r"steps\.0\.args\.value: \$\{image\}"):
        WorkflowSpec.model_validate(spec)


def test_templates_keep_types_and_fill_strings() -> None:
    context = {"n": 3, "app": "web", "obj": {"tags": ["a", "b"]}}
    assert render({"x": "${n}", "y": "${app}-${n}", "z": ["${obj.tags.1}"]}, context) == {
        "x": 3,
        "y": "web-3",
        "z": ["b"],
    }
    with pytest.raises(KeyError, match="missing"):
        render("${missing}", context)


def test_a_missing_input_is_named() -> None:
    spec = WorkflowSpec.model_validate(guide_pipeline())
    with pytest.raises(ValueError, match=r"data\.environment: required"):
        new_run("p-1", spec, {"app": "web", "version": "1"}, 0.0)


def test_each_transition_moves_one_step_and_sends_the_next() -> None:
    spec = WorkflowSpec.model_validate(guide_pipeline())
    state, messages = new_run("p-1", spec, DATA, 0.0)
    assert [m.type for m in messages] == ["workflow.started", "workflow.step_due"]
    state, messages = advance(state, Outcome(ok=True, result={"value": "web:1.2.3"}), 1.0)
    assert (state.index, state.context["image"]) == (1, "web:1.2.3")
    assert [m.type for m in messages] == ["workflow.step_completed", "workflow.step_due"]
    assert messages[-1].data == {"flow_id": "p-1", "mode": "forward", "index": 1, "attempt": 1}


# ---- runs on the bus -------------------------------------------------------------------


async def test_steps_run_in_order_with_the_context_passed_along(unit: Running) -> None:
    flow_id = await unit.run(guide_pipeline(), DATA)
    state = await unit.until_phase(flow_id, "succeeded")
    assert [(op, key) for op, key, _ in unit.ops.calls] == [
        ("do", "build"),
        ("scan", "scan"),
        ("do", "deploy"),
        ("do", "notify"),
    ]
    assert unit.ops.calls[2][2] == {"image": "web:1.2.3", "ns": "staging"}
    assert unit.ops.calls[3][2] == "Deployed web:1.2.3"
    assert state.context["deployed"] == "web:1.2.3"
    done = await unit.wait_for(lambda: unit.of_type("workflow.completed"))
    assert done[0].data["context"]["image"] == "web:1.2.3"
    steps = [e.data["step"] for e in unit.of_type("workflow.step_completed")]
    assert steps == ["build", "scan", "deploy", "notify"]
    # One step per delivery: no stored transition completes more than one step.
    journal = await unit.repo.journal(flow_id)
    assert all(sum(e["kind"] == "completed" for e in j.entries) <= 1 for j in journal)

    record = await unit.repo.get(flow_id)
    assert record is not None and (record.kind, record.phase, record.name) == (
        "pipeline",
        "succeeded",
        "ship",
    )
    completed = [e["step"] for j in journal for e in j.entries if e["kind"] == "completed"]
    assert completed == ["build", "scan", "deploy", "notify"]
    assert [j.rev for j in journal] == sorted({j.rev for j in journal})
    listed = await unit.repo.list(RecordFilter(kind="pipeline", app="web"))
    assert [r.id for r in listed] == [flow_id]


async def test_a_failed_step_ends_with_a_report_naming_it(unit: Running) -> None:
    flow_id = await unit.run(guide_pipeline(found=3), DATA)
    state = await unit.until_phase(flow_id, "failed")
    (report,) = await unit.wait_for(lambda: unit.of_type("workflow.failed"))
    assert report.data["failed_step"] == "scan"
    assert report.data["index"] == 1
    assert "fail_if: found = 3; result > 0" in report.data["error"]
    assert report.data["context"]["image"] == "web:1.2.3"
    assert ("do", "deploy") not in [(op, key) for op, key, _ in unit.ops.calls]
    assert state.failed_step is not None and state.failed_step["step"] == "scan"
    record = await unit.repo.get(flow_id)
    assert record is not None and record.phase == "failed"
    assert record.reason == "scan: fail_if: found = 3; result > 0"
    assert record.detail["failed_step"]["context"]["version"] == "1.2.3"


async def test_retries_per_step_then_the_report(unit: Running) -> None:
    spec = guide_pipeline()
    spec["steps"][0]["retry"] = {"attempts": 3, "backoff": 0.05}
    spec["steps"][2]["retry"] = {"attempts": 2, "backoff": 0.05}
    unit.ops.transient["do:build"] = 2  # the third try succeeds
    unit.ops.transient["do:deploy"] = 5  # never within two tries
    flow_id = await unit.run(spec, DATA)
    await unit.until_phase(flow_id, "failed")
    build = [e for e in unit.of_type("workflow.step_completed") if e.data["step"] == "build"]
    assert build[0].data["attempts"] == 3
    (report,) = await unit.wait_for(lambda: unit.of_type("workflow.failed"))
    assert (report.data["failed_step"], report.data["attempts"]) == ("deploy", 2)
    assert "try again" in report.data["error"]
    assert [k for op, k, _ in unit.ops.calls].count("deploy") == 2


async def test_a_step_that_overruns_its_timeout_fails(unit: Running) -> None:
    spec = guide_pipeline()
    spec["steps"][3]["timeout"] = 0.2
    unit.ops.slow["do:notify"] = 5.0
    flow_id = await unit.run(spec, DATA)
    await unit.until_phase(flow_id, "failed")
    (report,) = await unit.wait_for(lambda: unit.of_type("workflow.failed"))
    assert report.data["failed_step"] == "notify"
    assert "no answer within 0.2s" in report.data["error"]


async def test_a_stale_step_due_repeats_no_side_effect(unit: Running) -> None:
    flow_id = await unit.run(guide_pipeline(), DATA)
    await unit.until_phase(flow_id, "succeeded")
    before = dict(unit.ops.done)
    await unit.publish(
        "workflow.step_due", {"flow_id": flow_id, "mode": "forward", "index": 0, "attempt": 1}
    )
    await unit.wait_for(lambda: len(unit.of_type("workflow.completed")) >= 2)
    assert dict(unit.ops.done) == before
    # The completion was re-sent under its original id: subscribers' inboxes drop it.
    assert len({e.id for e in unit.of_type("workflow.completed")}) == 1


async def test_bad_requests_are_dead_lettered_with_the_reason(
    redis_client: Any, names: Names
) -> None:
    async with running_workflows("memory", redis_client, names) as unit:
        spec = guide_pipeline()
        await unit.publish("workflow.run_requested", {"spec": spec, "data": {"app": "web"}})
        bad = dict(spec, steps=[dict(spec["steps"][0], tool="nope")])
        await unit.publish("workflow.run_requested", {"spec": bad, "data": DATA})
        await unit.broker.join(10)
        reasons = sorted(str(d.headers.get(HEADER_DEAD_REASON)) for d in unit.broker.dead_letters)
    assert len(reasons) == 2
    assert "data.version: required by pipeline ship" in reasons[0]
    assert "spec.steps.0.tool" in reasons[1]
