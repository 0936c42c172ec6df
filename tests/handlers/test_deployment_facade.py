"""The deploy facade as a declared pipeline (flows/pipeline_facade.yaml) on the embedded
system: one step per delivery, the events subscribers have always seen, the failed-step
report beside deployment.failed, records of the run, and an overridable spec."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from flows.pipeline_facade import (
    DEFAULT_SPEC,
    FacadeSpecError,
    facade_run_id,
    load_facade_spec,
    mint_flow_id,
)
from flows.pipeline_store import WorkflowStore
from schemas.envelope import new_event
from schemas.tools.security_scanner import Vulnerability
from tests.handlers.test_flows import request, system_for
from tools.errors import ToolTransientError
from tools.fakes.docker import FakeDockerServer
from tools.fakes.security_scanner import FakeSecurityScannerServer

pytestmark = pytest.mark.timeout(60)

DEPLOYMENT_EVENTS = (
    "deployment.requested",
    "deployment.started",
    "image.built",
    "security.scan_requested",
    "security.scan_completed",
    "deployment.completed",
)


async def test_a_request_runs_the_declared_pipeline_one_step_per_delivery(tmp_path: Path) -> None:
    async with system_for(tmp_path) as system:
        ev = request(tmp_path)
        await system.broker.publish(ev)
        await system.settle()
        flow_id = mint_flow_id("deploy.requested", ev.id)
        # The events of the hand-coded chain, in its order, with its flow id.
        seen = [e.type for e in system.events if e.type in DEPLOYMENT_EVENTS]
        assert seen == list(DEPLOYMENT_EVENTS)
        for type_ in DEPLOYMENT_EVENTS[1:]:
            if type_ != "image.built":
                assert system.of_type(type_)[0].data["flow_id"] == flow_id, type_
        run = await WorkflowStore(system.redis, system.names).load(facade_run_id(flow_id))
        assert run is not None and run.phase == "succeeded"
        assert (run.spec.kind, run.spec.name) == ("pipeline", "deploy")
        done = system.of_type("workflow.step_completed")
        assert [e.data["step"] for e in done] == ["validate", "build", "scan", "deploy", "notify"]
        # one step per delivery: each completion was caused by a different event
        assert len({e.causationid for e in done}) == 5
        assert run.context["image_id"] and run.context["phase"] == "succeeded"
        record = await system.flow_repository.get(run.id)
        assert record is not None and (record.kind, record.phase) == ("pipeline", "succeeded")
        assert system.broker.dead_letters == []


async def test_a_failed_scan_gives_the_failed_step_report_and_deployment_failed(
    tmp_path: Path,
) -> None:
    async with system_for(tmp_path) as system:
        vuln = Vulnerability(
            id="CVE-1",
            package="openssl",
            installed_version="1",
            severity="critical",
            ecosystem="Debian",
        )
        system.server(FakeSecurityScannerServer).image_vulnerabilities["web:1.0"] = [vuln]
        ev = request(tmp_path)
        await system.broker.publish(ev)
        await system.settle()
        failed = system.of_type("deployment.failed")
        assert [e.data["stage"] for e in failed] == ["security_scan"]
        [report] = system.of_type("workflow.failed")
        assert report.data["failed_step"] == "scan" and report.data["index"] == 2
        assert "1 vulnerabilities at or above high" in report.data["error"]
        assert report.data["context"]["image"] == "web:1.0"
        run_id = facade_run_id(mint_flow_id("deploy.requested", ev.id))
        record = await system.flow_repository.get(run_id)
        assert record is not None and record.phase == "failed"
        assert record.detail["failed_step"]["step"] == "scan"
        assert system.of_type("workflow.completed") == []


async def test_a_policy_refusal_is_reported_at_validate_with_the_request_as_cause(
    tmp_path: Path,
) -> None:
    async with system_for(tmp_path) as system:
        ev = request(tmp_path, environment="moon")
        await system.broker.publish(ev)
        await system.settle()
        [failed] = system.of_type("deployment.failed")
        assert failed.data["stage"] == "policy" and failed.data["flow_id"] is None
        assert "data.environment" in failed.data["reason"]
        assert failed.causationid == ev.id  # deploy steps of user pipelines match on it
        [report] = system.of_type("workflow.failed")
        assert report.data["failed_step"] == "validate"
        assert system.of_type("deployment.started") == []
        assert system.broker.dead_letters == []


async def test_a_transient_build_error_is_retried_by_the_step_policy(tmp_path: Path) -> None:
    async with system_for(tmp_path) as system:
        docker = system.server(FakeDockerServer)
        for _ in range(3):  # one try's worth of the guard's own retries
            docker.fail_next("docker_build", ToolTransientError("engine busy", status=503))
        await system.broker.publish(request(tmp_path))
        await system.settle(timeout=45)
        assert len(system.of_type("deployment.completed")) == 1
        done = system.of_type("workflow.step_completed")
        [build] = [e for e in done if e.data["step"] == "build"]
        assert build.data["attempts"] == 2
        assert len(system.of_type("image.built")) == 1


async def test_a_build_that_keeps_failing_fails_the_deployment_at_build(tmp_path: Path) -> None:
    async with system_for(tmp_path) as system:
        system.server(FakeDockerServer).build_errors["web:1.0"] = "COPY failed"
        await system.broker.publish(request(tmp_path))
        await system.settle()
        assert [e.data["stage"] for e in system.of_type("deployment.failed")] == ["build"]
        [report] = system.of_type("workflow.failed")
        assert report.data["failed_step"] == "build" and report.data["attempts"] == 1
        assert system.of_type("security.scan_requested") == []


async def test_the_pipeline_is_overridable_and_checked_on_load(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    raw = yaml.safe_load(DEFAULT_SPEC.read_text())
    raw["steps"] = [s for s in raw["steps"] if s["name"] != "notify"]
    raw["name"] = "deploy-lean"
    path = tmp_path / "lean.yaml"
    path.write_text(yaml.safe_dump(raw))
    monkeypatch.setenv("CODEBUS_DEPLOY_PIPELINE", str(path))
    async with system_for(tmp_path) as system:
        ev = request(tmp_path)
        await system.broker.publish(ev)
        await system.settle()
        [done] = system.of_type("workflow.completed")
        assert done.data["name"] == "deploy-lean"
        steps = [e.data["step"] for e in system.of_type("workflow.step_completed")]
        assert steps == ["validate", "build", "scan", "deploy"]
        assert len(system.of_type("deployment.completed")) == 1

    bad = dict(raw, steps=[raw["steps"][0], {"name": "x", "action": "deploy.launch"}])
    path.write_text(yaml.safe_dump(bad))
    with pytest.raises(FacadeSpecError, match=r"steps\.1\.action: unknown action"):
        load_facade_spec(str(path))  # changed on disk: read again
    async with system_for(tmp_path) as system:  # a worker with a broken override
        await system.broker.publish(request(tmp_path))
        await system.settle()
        [dead] = system.broker.dead_letters
        assert "CODEBUS_DEPLOY_PIPELINE" in str(dead.headers)
        assert "steps.1.action" in str(dead.headers)
        assert system.of_type("deployment.started") == []
    first = dict(raw, steps=raw["steps"][1:])
    (tmp_path / "first.yaml").write_text(yaml.safe_dump(first))
    with pytest.raises(FacadeSpecError, match=r"steps\.0\.action: must be deploy.validate"):
        load_facade_spec(str(tmp_path / "first.yaml"))


async def test_user_pipelines_may_not_call_the_facade_actions(tmp_path: Path) -> None:
    async with system_for(tmp_path, ("workflows", "audit")) as system:
        spec = {"kind": "pipeline", "name": "sneaky", "steps": [
            {"name": "v", "action": "deploy.validate"}]}  # fmt: skip
        await system.broker.publish(new_event("workflow.run_requested", {"spec": spec}))
        await system.settle()
        [dead] = system.broker.dead_letters
        assert "spec.steps.0.action" in str(dead.headers)
