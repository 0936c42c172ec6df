"""A pipeline step that is a deployment flow (issue 9's engine, unit ``deploy``): the
step ends with the deployment's outcome, and its failure is the pipeline's report."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from flows.pipeline_store import WorkflowStore
from schemas.envelope import new_event
from schemas.workflows import WorkflowSpec, WorkflowState
from tests.flows.test_strategies_embedded import flows_config, manifests
from tools.fakes.slack import FakeSlackServer
from workers.embedded import EmbeddedSystem

pytestmark = pytest.mark.timeout(60)

UNITS = ("deploy", "security", "notify", "audit", "workflows")


def spec() -> dict[str, Any]:
    return {
        "kind": "pipeline",
        "name": "ship",
        "inputs": ["version", "manifest"],
        "steps": [
            {
                "name": "rollout",
                "deploy": {
                    "app": "web",
                    "version": "${version}",
                    "environment": "staging",
                    "strategy": "rolling",
                    "manifest_path": "${manifest}",
                },
                "outputs": {"deployment": "flow_id"},
            },
            {
                "name": "announce",
                "tool": "slack-notifications.post_message",
                "args": {"channel": "#deployments", "text": "web ${version}: ${deployment}"},
            },
        ],
    }


async def run(system: EmbeddedSystem, data: dict[str, Any], *phases: str) -> WorkflowState:
    request = new_event("workflow.run_requested", {"spec": spec(), "data": data})
    await system.broker.publish(request)
    from flows.pipeline import run_id

    store = WorkflowStore(system.redis, system.names)
    flow_id = run_id(request.id, "pipeline")
    async with asyncio.timeout(30):
        while True:
            state = await store.load(flow_id)
            if state is not None and state.phase in phases:
                return state
            await asyncio.sleep(0.05)


def test_a_step_is_a_tool_or_a_deployment_never_both() -> None:
    bad = spec()
    bad["steps"][0]["tool"] = "ops.do"
    with pytest.raises(ValueError, match="exactly one of tool, deploy and action"):
        WorkflowSpec.model_validate(bad)
    bad = spec()
    bad["steps"][0]["deploy"]["version"] = "${nope}"
    with pytest.raises(ValueError, match=r"steps\.0\.deploy\.version: \$\{nope\}"):
        WorkflowSpec.model_validate(bad)


async def test_the_step_waits_for_the_deployment_and_takes_its_outcome(tmp_path: Path) -> None:
    config = flows_config(tmp_path)
    async with EmbeddedSystem(UNITS, flows_config=config, sweep_interval=0.2) as system:
        data = {"version": "1.0", "manifest": manifests(tmp_path, "1.0")}
        state = await run(system, data, "succeeded", "failed")
        assert state.phase == "succeeded", state.failed_step
        completed = system.of_type("deployment.completed")
        assert [e.data["flow_id"] for e in completed] == [state.context["deployment"]]
        slack = system.server(FakeSlackServer)
        assert any(f"web 1.0: {state.context['deployment']}" in str(m) for m in slack.messages)

        # A manifest outside the configured roots: the deploy unit refuses the request,
        # and the refusal is the pipeline's failed-step report.
        outside = {"version": "2.0", "manifest": "/etc/passwd"}
        failed = await run(system, outside, "succeeded", "failed")
    assert failed.phase == "failed" and failed.failed_step is not None
    assert failed.failed_step["step"] == "rollout"
    assert failed.failed_step["error"].startswith("deployment failed at ")
