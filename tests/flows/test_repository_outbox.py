"""Record writes are durable: with moto's S3 server stopped (connection refused, the
breaker opening), a deployment through the deploy pipeline runs to its end, its records
wait in the Redis outbox, and once S3 is back the sweeps write every one of them - no
journal record of any rev missing, the terminal phase included."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import fakeredis
import pytest
from moto.server import ThreadedMotoServer

from flows.pipeline_facade import facade_run_id
from flows.pipeline_store import WorkflowStore
from flows.repository import InMemoryRepository, JournalConflict, RepositoryUnavailable
from flows.repository_outbox import RecordOutbox
from flows.repository_s3 import S3Repository
from flows.store import FlowStore
from schemas.envelope import new_event
from schemas.names import Names
from schemas.workflows import FlowRecord, JournalRecord
from tests.flows.test_repository import make_bucket, s3_server
from tests.flows.test_strategies_embedded import deploy, flows_config, until
from tests.helpers import free_port
from tests.reports import report
from workers.embedded import EmbeddedSystem
from workers.toolbox import ToolsFile, build_toolbox, guard_config

pytestmark = pytest.mark.timeout(90)

#: Fast guards, so the outage is seen (and the recovery found) within the test's time.
GUARDS = {
    "defaults": {
        "breaker_reset_timeout": 0.3,
        "retry_base_delay": 0.01,
        "retry_max_delay": 0.05,
        "timeout": 2.0,
    }
}


async def wait_for(check: Any, seconds: float, what: str) -> Any:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = await check()
        if value:
            return value
        await asyncio.sleep(0.05)
    raise AssertionError(f"not within {seconds}s: {what}")


async def test_records_written_while_s3_is_down_are_written_once_it_is_back(
    tmp_path: Path, redis_client: Any, names: Names
) -> None:
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    moto.start()
    bucket = make_bucket(endpoint)
    toolbox = build_toolbox(
        [s3_server(endpoint)], redis_client, names, guard_config(ToolsFile(guards=GUARDS)), "t"
    )
    await toolbox.start()
    repo = S3Repository(toolbox.as_role("deploy"), bucket)
    units = ("deploy", "security", "notify", "audit")
    try:
        async with EmbeddedSystem(
            units, flows_config=flows_config(tmp_path), sweep_interval=0.2, flow_repository=repo
        ) as system:
            outbox = system.names.flow_records_outbox_key
            moto.stop()  # S3 down: every write is refused
            flow_id = await deploy(system, tmp_path, "1.0", "rolling")
            flow = await until(system, flow_id, "succeeded")
            runs = WorkflowStore(system.redis, system.names)

            async def run_done() -> Any:
                run = await runs.load(facade_run_id(flow_id))
                return run if run is not None and run.phase == "succeeded" else None

            run = await wait_for(run_done, 20, "the deploy run succeeded")
            queued = int(await system.redis.hlen(outbox))
            assert queued > run.rev  # at least every rev of the run is waiting

            moto = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
            moto.start()  # back, with the same bucket (moto keeps its state in-process)
            back = time.monotonic()

            async def flushed() -> bool:
                return int(await system.redis.hlen(outbox)) == 0

            await wait_for(flushed, 30, "the outbox written to S3")
            took = time.monotonic() - back
            flow = await FlowStore(system.redis, system.names).load(flow_id) or flow

        record = await repo.get(run.id)
        assert record is not None and (record.phase, record.terminal) == ("succeeded", True)
        journal = await repo.journal(run.id)
        assert [j.rev for j in journal] == list(range(run.rev + 1))  # no rev missing
        deployment = await repo.get(flow_id)
        assert deployment is not None and deployment.phase == "succeeded"
        entries = [e for j in await repo.journal(flow_id) for e in j.entries]
        steps = [e["step"] for e in entries if e["kind"] == "step"]
        assert steps == list(range(len(flow.steps)))  # every step of the rollout, once
        assert any(e["kind"] == "phase" and e.get("to") == "succeeded" for e in entries)
        report(
            "records_outbox",
            f"S3 down for one deployment: queued={queued} written_after_restart_in={took:.1f}s "
            f"run_revs_missing={run.rev + 1 - len(journal)} deployment_steps_missing="
            f"{len(flow.steps) - len(steps)}",
        )
    finally:
        moto.stop()
        await toolbox.close()


# ---- the outbox itself, and the workflows unit's sweep --------------------------------


class Flaky(InMemoryRepository):
    """Writes fail while ``down``; ``conflict`` makes every append a JournalConflict."""

    def __init__(self) -> None:
        super().__init__()
        self.down = True
        self.conflict = False

    async def append(self, entry: JournalRecord) -> bool:
        if self.conflict:
            raise JournalConflict("other content under this rev")
        if self.down:
            raise RepositoryUnavailable("S3 is down")
        return await super().append(entry)

    async def save(self, record: Any) -> bool:
        if self.down:
            raise RepositoryUnavailable("S3 is down")
        return await super().save(record)


def pair(flow_id: str, rev: int) -> tuple[JournalRecord, FlowRecord]:
    journal = JournalRecord(flow_id=flow_id, rev=rev, at=float(rev), phase="running")
    record = FlowRecord(
        id=flow_id, kind="pipeline", rev=rev, phase="running", created_at=0.0, updated_at=rev
    )
    return journal, record


async def test_a_refused_write_waits_and_a_flush_writes_it_oldest_first() -> None:
    redis = fakeredis.FakeAsyncRedis()
    flaky = Flaky()
    outbox = RecordOutbox(flaky, redis, "t:outbox")
    for rev in (0, 1, 2):
        assert await outbox.write(*pair("run-1", rev)) is False
    assert await outbox.pending() == 3
    again = await outbox.flush()
    assert (again.written, again.failed, again.left) == (0, 1, 3)  # stops at the first
    flaky.down = False
    done = await outbox.flush()
    assert (done.written, done.failed, done.left) == (3, 0, 0)
    assert [j.rev for j in await flaky.journal("run-1")] == [0, 1, 2]
    saved = await flaky.get("run-1")
    assert saved is not None and saved.rev == 2
    # A journal conflict can never be written: dropped (logged), not retried for ever.
    flaky.conflict = True
    assert await outbox.write(*pair("run-2", 0)) is True
    assert await outbox.pending() == 0


async def test_the_workflows_sweep_writes_what_a_pipeline_could_not(tmp_path: Path) -> None:
    flaky = Flaky()
    spec = {"kind": "pipeline", "name": "p", "steps": [
        {"name": "a", "tool": "docker.docker_images"},
        {"name": "b", "tool": "docker.docker_images"}]}  # fmt: skip
    async with EmbeddedSystem(
        ("workflows", "audit"), sweep_interval=0.2, flow_repository=flaky
    ) as system:
        await system.broker.publish(new_event("workflow.run_requested", {"spec": spec}))
        [done] = await wait_for(
            lambda: _async(system.of_type("workflow.completed")), 20, "the run completed"
        )
        run = await WorkflowStore(system.redis, system.names).load(done.data["flow_id"])
        assert run is not None and run.phase == "succeeded"
        key = system.names.flow_records_outbox_key
        assert int(await system.redis.hlen(key)) == run.rev + 1
        flaky.down = False

        async def flushed() -> bool:
            return int(await system.redis.hlen(key)) == 0

        await wait_for(flushed, 20, "the workflows sweep wrote the outbox")
    assert [j.rev for j in await flaky.journal(run.id)] == list(range(run.rev + 1))
    record = await flaky.get(run.id)
    assert record is not None and record.phase == "succeeded" and record.rev == run.rev


async def _async(value: Any) -> Any:
    return value
