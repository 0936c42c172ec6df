"""``codebus flows demo``: the guide's pipeline failing at its scan step with the
failed-step report, and the guide's saga undone in reverse order, on the embedded system
(in-memory broker, fakeredis, fake tool servers, the real handlers and guard chain)."""

from __future__ import annotations

import asyncio
import tempfile
import time
from pathlib import Path
from typing import Any, TextIO

from schemas.envelope import Event, new_event
from schemas.tools.security_scanner import Vulnerability
from tools.fakes.s3_storage import FakeS3StorageServer
from tools.fakes.security_scanner import FakeSecurityScannerServer
from workers.embedded import EmbeddedSystem

BUCKET = "demo-databases"

PIPELINE: dict[str, Any] = {
    "kind": "pipeline",
    "name": "guide-deploy",
    "inputs": ["app", "version", "environment", "context"],
    "steps": [
        {
            "name": "build",
            "tool": "docker.docker_build",
            "args": {"dockerfile_path": "${context}", "image_tag": "${app}:${version}"},
            "outputs": {"image_id": "image_id"},
        },
        {
            "name": "scan",
            "tool": "security-scanner.docker_security_scan",
            "args": {"image": "${app}:${version}", "severity": "high"},
            "fail_if": {"field": "total_vulnerabilities", "condition": "result > 0"},
        },
        {
            "name": "deploy",
            "tool": "kubernetes.kubectl_apply",
            "args": {"objects": [{"apiVersion": "v1", "kind": "ConfigMap",
                                  "metadata": {"name": "${app}"}}],
                     "namespace": "${environment}"},
        },
    ],
}  # fmt: skip

SAGA: dict[str, Any] = {
    "kind": "saga",
    "name": "guide-provision",
    "inputs": ["app", "namespace", "image", "schema_file"],
    "steps": [
        {
            "name": "create_database",
            "tool": "s3-storage.s3_upload_file",
            "args": {"file_path": "${schema_file}", "bucket": BUCKET,
                     "key": "databases/${app}_db.sql"},
            "outputs": {"db_key": "key"},
            "compensate": {"tool": "s3-storage.s3_delete_object",
                           "args": {"bucket": BUCKET, "key": "${db_key}"}},
        },
        {
            "name": "deploy_backend",
            "tool": "kubernetes.kubectl_apply",
            "args": {"namespace": "${namespace}", "objects": [
                {"apiVersion": "apps/v1", "kind": "Deployment",
                 "metadata": {"name": "backend"},
                 "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "${app}"}},
                          "template": {"metadata": {"labels": {"app": "${app}"}},
                                       "spec": {"containers": [
                                           {"name": "backend", "image": "${image}"}]}}}}]},
            "compensate": {"tool": "kubernetes.kubectl_delete",
                           "args": {"resource_type": "deployment", "name": "backend",
                                    "namespace": "${namespace}"}},
        },
        {
            # Fails: nothing called "frontend" was ever deployed.
            "name": "check_frontend",
            "tool": "kubernetes.kubectl_get",
            "args": {"resource_type": "deployment", "name": "frontend",
                     "namespace": "${namespace}"},
        },
    ],
}  # fmt: skip

_SHOWN = {
    "workflow.started": ("steps",),
    "workflow.step_completed": ("step", "attempts"),
    "workflow.failed": ("failed_step", "error"),
    "saga.compensation_completed": ("step", "tool"),
    "saga.compensation_failed": ("step", "error"),
    "saga.finished": ("phase", "failed"),
    "workflow.completed": (),
}


async def run_workflows_demo(out: TextIO, timeout: float = 30.0) -> int:
    """Run both; 0 when the pipeline failed at its scan and the saga compensated in
    reverse order."""
    t0 = time.monotonic()

    def show(ev: Event) -> None:
        if ev.type in _SHOWN:
            detail = " ".join(f"{k}={ev.data.get(k)}" for k in _SHOWN[ev.type])
            name = ev.data.get("name", "")
            out.write(f"{time.monotonic() - t0:6.3f}s  {ev.type:<28} {name:<16} {detail}\n")

    work = Path(tempfile.mkdtemp(prefix="codebus-flows-demo-"))
    (work / "Dockerfile").write_text("FROM scratch\n")
    schema = work / "shop.sql"
    schema.write_text("create table orders (id int);\n")
    async with EmbeddedSystem(units=("workflows", "audit"), on_event=show) as system:
        system.server(FakeS3StorageServer).create_bucket(BUCKET)
        system.server(FakeSecurityScannerServer).set_image_vulnerabilities(
            "shop:2.0.0",
            [
                Vulnerability(
                    id="CVE-2022-0778",
                    package="openssl",
                    installed_version="3.0.2-0ubuntu1",
                    fixed_version="3.0.2-0ubuntu1.1",
                    severity="critical",
                    ecosystem="Debian",
                    summary="infinite loop in BN_mod_sqrt()",
                )
            ],
        )
        out.write("codebus flows demo: the guide's pipeline and saga on the embedded system\n\n")
        pipeline = new_event(
            "workflow.run_requested",
            {
                "spec": PIPELINE,
                "data": {
                    "app": "shop",
                    "version": "2.0.0",
                    "environment": "production",
                    "context": str(work),
                },
            },
        )
        saga = new_event(
            "workflow.run_requested",
            {
                "spec": SAGA,
                "data": {
                    "app": "shop",
                    "namespace": "production",
                    "image": "shop:1.9.0",
                    "schema_file": str(schema),
                },
            },
        )
        await system.broker.publish(pipeline)
        await system.broker.publish(saga)
        try:
            await system.settle(timeout)
        except TimeoutError:
            out.write("demo did not settle in time\n")
        await asyncio.sleep(0)
        events = system.events
        repo = system.flow_repository
        records = {r.name: r for r in await repo.list(_all())}
        dead = len(system.broker.dead_letters)
    report = next((e for e in events if e.type == "workflow.failed"), None)
    undone = [e.data["step"] for e in events if e.type == "saga.compensation_completed"]
    out.write("\nsummary\n")
    for name, record in sorted(records.items()):
        out.write(f"  {record.kind:<8} {name:<16} {record.phase:<20} {record.reason or ''}\n")
    out.write(f"  undone, in order: {', '.join(undone) or 'nothing'}; dead letters: {dead}\n")
    ok = (
        report is not None
        and report.data["failed_step"] == "scan"
        and records.get("guide-deploy") is not None
        and records["guide-deploy"].phase == "failed"
        and records.get("guide-provision") is not None
        and records["guide-provision"].phase == "compensated"
        and undone == ["deploy_backend", "create_database"]
        and dead == 0
    )
    out.write("demo OK\n" if ok else "demo FAILED\n")
    return 0 if ok else 1


def _all() -> Any:
    from schemas.workflows import RecordFilter

    return RecordFilter()
