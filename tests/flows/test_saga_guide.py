"""The shipped example workflows (deploy/workflows/): they load, and the guide's saga
runs against the S3 and Kubernetes stand-ins - forward, and undone in reverse."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from schemas.names import Names
from tests.flows.pipeline_support import running_workflows
from tools.fakes.kubernetes import FakeKubernetesServer
from tools.fakes.s3_storage import FakeS3StorageServer
from workers.cli_flows import load_spec

pytestmark = [pytest.mark.timeout(60), pytest.mark.redis]

ROOT = Path(__file__).resolve().parents[2] / "deploy" / "workflows"
BUCKET = "myapp-databases"


def test_the_shipped_examples_are_valid() -> None:
    pipeline = load_spec(ROOT / "guide-pipeline.yaml")
    saga = load_spec(ROOT / "guide-saga.yaml")
    assert [s.name for s in pipeline.steps] == ["build", "scan", "deploy", "notify"]
    assert pipeline.steps[1].tool == "security-scanner.docker_security_scan"
    assert [(s.name, s.compensate and s.compensate.tool) for s in saga.steps] == [
        ("create_database", "s3-storage.s3_delete_object"),
        ("deploy_backend", "kubernetes.kubectl_delete"),
    ]


def _data(tmp_path: Path) -> dict[str, Any]:
    schema = tmp_path / "myapp.sql"
    schema.write_text("create table t (id int);\n")
    return {
        "app": "myapp",
        "namespace": "production",
        "image": "registry.example.com/myapp-backend:1.2.3",
        "bucket": BUCKET,
        "schema_file": str(schema),
    }


@pytest.mark.parametrize("broker", ["memory", "rabbitmq"])
async def test_the_guide_saga_provisions_then_undoes_in_reverse(
    broker: str, redis_client: Any, names: Names, tmp_path: Path
) -> None:
    s3, k8s = FakeS3StorageServer([BUCKET]), FakeKubernetesServer()
    spec = load_spec(ROOT / "guide-saga.yaml").model_dump(mode="json")
    async with running_workflows(broker, redis_client, names, (s3, k8s)) as unit:
        flow_id = await unit.run(spec, _data(tmp_path))
        await unit.until_phase(flow_id, "succeeded")
        assert "databases/myapp_db.sql" in s3.buckets[BUCKET]
        assert ("Deployment", "production", "backend") in k8s.objects

        # The same saga with a failing last step: both steps are undone, backend first.
        spec["steps"].append({"name": "smoke", "tool": "ops.do", "args": {"key": "smoke"}})
        unit.ops.broken.add("do:smoke")
        data = dict(_data(tmp_path), app="other", namespace="staging")
        failed_id = await unit.run(spec, data)
        state = await unit.until_phase(failed_id, "compensated")
    assert [c.step for c in state.compensations] == ["deploy_backend", "create_database"]
    assert [c.status for c in state.compensations] == ["done", "done"]
    assert "databases/other_db.sql" not in s3.buckets[BUCKET]
    assert ("Deployment", "staging", "backend") not in k8s.objects
    # The first saga's resources are untouched.
    assert "databases/myapp_db.sql" in s3.buckets[BUCKET]
    assert ("Deployment", "production", "backend") in k8s.objects
