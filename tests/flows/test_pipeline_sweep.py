"""The runs' sweeper: a run whose step message was lost is picked up again."""

from __future__ import annotations

import time
from typing import Any

import pytest

from flows.pipeline import new_run
from flows.pipeline_store import WorkflowStore
from schemas.names import Names
from schemas.workflows import WorkflowSpec
from tests.flows.pipeline_support import running_workflows

pytestmark = [pytest.mark.timeout(60), pytest.mark.redis]

SPEC = {
    "kind": "pipeline",
    "name": "orphan",
    "steps": [
        {"name": "one", "tool": "ops.do", "args": {"key": "one"}, "timeout": 1},
        {"name": "two", "tool": "ops.do", "args": {"key": "two"}, "timeout": 1},
    ],
}


@pytest.mark.parametrize("broker", ["memory", "rabbitmq"])
async def test_a_run_whose_step_message_was_lost_is_swept_and_finishes(
    broker: str, redis_client: Any, names: Names
) -> None:
    deps = {"workflows_sweep_interval": 0.3, "workflows_sweep_grace": 0.5}
    async with running_workflows(broker, redis_client, names, deps=deps) as unit:
        # A run stored 10 s ago whose first step_due never arrived (dead-lettered, say).
        spec = WorkflowSpec.model_validate(SPEC)
        orphan, _messages = new_run("pipeline-orphan", spec, {}, time.time() - 10)
        assert await WorkflowStore(redis_client, names).create(orphan)
        # Any run request starts the sweep chain.
        await unit.run(dict(SPEC, name="trigger"), {})
        state = await unit.until_phase("pipeline-orphan", "succeeded")
    assert [e["kind"] for e in state.journal].count("completed") == 2
    assert unit.ops.done["one"] == 2 and unit.ops.done["two"] == 2  # orphan + trigger
