"""Deployment flows leave their record: a summary and a journal record per decision,
written by the engine (``RecordingEngine``) as the flow moves; readable once Redis has
let the flow go; a repository outage never holds a rollout up."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from flows.repository import InMemoryRepository, RepositoryUnavailable
from schemas.workflows import JournalRecord, RecordFilter
from tests.flows.test_strategies_embedded import command, deploy, flows_config, until
from workers.embedded import EmbeddedSystem

pytestmark = pytest.mark.timeout(60)


async def test_a_canary_is_recorded_at_each_step_and_readable_after_redis(
    tmp_path: Path,
) -> None:
    async with EmbeddedSystem(flows_config=flows_config(tmp_path), sweep_interval=0.2) as system:
        repo = system.flow_repository
        await until(system, await deploy(system, tmp_path, "1.0", "canary"), "succeeded")
        flow = await deploy(system, tmp_path, "2.0", "canary")
        paused = await until(system, flow, "paused", step=4)
        mid = await repo.get(flow)
        assert mid is not None and (mid.phase, mid.step) == ("paused", 4)
        assert mid.detail["desired_weight"] == 50
        await command(system, "deployment.promote_requested", flow)
        done = await until(system, flow, "succeeded")
        await system.settle()
        await system.redis.delete(system.names.flow_key(flow))  # Redis let it go

    record = await repo.get(flow)
    assert record is not None
    assert (record.kind, record.app, record.version, record.environment) == (
        "deployment",
        "web",
        "2.0",
        "staging",
    )
    # Recorded per decision; the revs after it only cleared the outbox.
    assert (record.phase, record.terminal) == ("succeeded", True)
    assert record.rev <= done.rev
    assert record.strategy == "canary" and paused.rev < record.rev
    journal = await repo.journal(flow)
    entries = [e for j in journal for e in j.entries]
    steps = [e["step"] for e in entries if e["kind"] == "step"]
    assert steps == list(range(len(done.steps)))  # every step, in order, once
    assert any(e["kind"] == "command" and e["command"] == "promote" for e in entries)
    assert [j.rev for j in journal] == sorted({j.rev for j in journal})
    listed = await repo.list(RecordFilter(kind="deployment", app="web", phase="succeeded"))
    assert [r.version for r in listed] == ["2.0", "1.0"]


class Flaky(InMemoryRepository):
    """A repository whose writes fail while ``down``."""

    def __init__(self) -> None:
        super().__init__()
        self.down = True

    async def append(self, entry: JournalRecord) -> bool:
        if self.down:
            raise RepositoryUnavailable("S3 is down")
        return await super().append(entry)

    async def save(self, record: Any) -> bool:
        if self.down:
            raise RepositoryUnavailable("S3 is down")
        return await super().save(record)


async def test_a_repository_outage_never_holds_a_rollout_up(tmp_path: Path) -> None:
    flaky = Flaky()
    config = flows_config(tmp_path)
    async with EmbeddedSystem(
        flows_config=config, sweep_interval=0.2, flow_repository=flaky
    ) as system:
        first = await deploy(system, tmp_path, "1.0", "rolling")
        await until(system, first, "succeeded")
        assert await flaky.get(first) is None
        flaky.down = False
        # The next decision about any flow rewrites its summary: a new flow is recorded.
        second = await deploy(system, tmp_path, "2.0", "rolling")
        await until(system, second, "succeeded")
        await system.settle()
    record = await flaky.get(second)
    assert record is not None and record.phase == "succeeded"
