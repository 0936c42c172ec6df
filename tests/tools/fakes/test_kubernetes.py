"""The in-memory ``kubernetes`` server: same tools and models, plausible behaviour."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import BaseModel

from schemas.tools.kubernetes import (
    KubectlApplyArgs,
    KubectlDeleteArgs,
    KubectlGetArgs,
    KubectlLogsArgs,
    KubectlRolloutArgs,
    KubectlRolloutStatusArgs,
    KubectlScaleArgs,
)
from tools.adapters.kubernetes import KubernetesConfig, KubernetesServer
from tools.adapters.kubernetes_rollout import RolloutTimeout
from tools.errors import ToolArgumentError, ToolFailed, ToolTransientError
from tools.fakes.kubernetes import FakeKubernetesServer, sample_app_manifests


def _deployment(image: str) -> dict[str, Any]:
    labels = {"app": "web"}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "labels": labels},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {"containers": [{"name": "web", "image": image}]},
            },
        },
    }


@pytest.fixture
def fake() -> FakeKubernetesServer:
    """A fresh fake."""
    return FakeKubernetesServer()


async def call(fake: FakeKubernetesServer, tool: str, args: BaseModel) -> Any:
    """Call through the bound tool, as the registry does."""
    return await {t.spec.tool: t for t in fake.tools()}[tool].call(args)


def _write(tmp_path: Path, image: str) -> Path:
    file = tmp_path / "app.yaml"
    cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cfg"}, "data": {"a": "1"}}
    file.write_text(yaml.safe_dump_all([_deployment(image), cm]))
    return file


def test_same_tools_and_models_as_the_real_server(fake: FakeKubernetesServer) -> None:
    real = KubernetesServer(KubernetesConfig(host="http://127.0.0.1:1"))
    shape = {
        t.spec.name: (t.spec.args_model, t.spec.result_model, t.spec.read_only)
        for t in real.tools()
    }
    assert {
        t.spec.name: (t.spec.args_model, t.spec.result_model, t.spec.read_only)
        for t in fake.tools()
    } == shape


async def test_apply_get_scale_delete(fake: FakeKubernetesServer, tmp_path: Path) -> None:
    file = _write(tmp_path, "nginx:1")
    first = await call(fake, "kubectl_apply", KubectlApplyArgs(manifest_path=str(file)))
    assert first.status == "created" and first.applied_resources == [
        "deployment/web",
        "configmap/cfg",
    ]
    again = await call(fake, "kubectl_apply", KubectlApplyArgs(manifest_path=str(file)))
    assert again.status == "unchanged"
    dry = await call(
        fake,
        "kubectl_apply",
        KubectlApplyArgs(manifest_path=str(file), namespace="x", dry_run=True),
    )
    assert dry.status == "created" and fake.get("ConfigMap", "cfg", "x") is None

    got = await call(
        fake, "kubectl_get", KubectlGetArgs(resource_type="deploy", label_selector="app=web")
    )
    assert got.items[0]["status"]["availableReplicas"] == 2
    scaled = await call(fake, "kubectl_scale", KubectlScaleArgs(name="web", replicas=5))
    assert (scaled.previous_replicas, scaled.replicas) == (2, 5)
    assert fake.get("Deployment", "web")["status"]["readyReplicas"] == 5

    deleted = await call(fake, "kubectl_delete", KubectlDeleteArgs(manifest_path=str(file)))
    assert deleted.success and fake.objects == {}
    missing = await call(fake, "kubectl_delete", KubectlDeleteArgs(resource_type="cm", name="cfg"))
    assert (missing.success, missing.deleted[0].status) == (False, "not_found")


async def test_rollout_status_undo_and_never_ready(
    fake: FakeKubernetesServer, tmp_path: Path
) -> None:
    await call(
        fake, "kubectl_apply", KubectlApplyArgs(manifest_path=str(_write(tmp_path, "nginx:1")))
    )
    await call(
        fake, "kubectl_apply", KubectlApplyArgs(manifest_path=str(_write(tmp_path, "nginx:2")))
    )
    status = await call(fake, "kubectl_rollout_status", KubectlRolloutStatusArgs(name="web"))
    assert status.ready and status.generation == 2

    undo = await call(fake, "kubectl_rollout", KubectlRolloutArgs(action="undo", name="web"))
    assert (undo.changed, undo.revision) == (True, 1)
    dep = fake.get("Deployment", "web")
    assert dep["spec"]["template"]["spec"]["containers"][0]["image"] == "nginx:1"
    assert dep["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "3"

    await call(fake, "kubectl_rollout", KubectlRolloutArgs(action="pause", name="web"))
    with pytest.raises(ToolFailed, match="paused"):
        await call(fake, "kubectl_rollout", KubectlRolloutArgs(action="undo", name="web"))

    fake.never_ready.add("web")
    await call(fake, "kubectl_rollout", KubectlRolloutArgs(action="resume", name="web"))
    with pytest.raises(RolloutTimeout) as err:
        await call(fake, "kubectl_rollout_status", KubectlRolloutStatusArgs(name="web", timeout=1))
    assert err.value.last_status.available_replicas == 0


async def test_logs_and_injected_failures(fake: FakeKubernetesServer) -> None:
    fake.set_logs("web-1", "a\nb\nc\n")
    logs = await call(fake, "kubectl_logs", KubectlLogsArgs(pod_name="web-1", tail_lines=2))
    assert logs.logs == "b\nc\n"
    with pytest.raises(ToolFailed) as missing:
        await call(fake, "kubectl_logs", KubectlLogsArgs(pod_name="nope"))
    assert missing.value.status == 404

    fake.fail_next("kubectl_get", ToolTransientError("api down", status=503))
    with pytest.raises(ToolTransientError):
        await call(fake, "kubectl_get", KubectlGetArgs(resource_type="pods"))
    assert (await call(fake, "kubectl_get", KubectlGetArgs(resource_type="pods"))).items == []
    assert [name for name, _ in fake.calls].count("kubectl_get") == 2


async def test_canned_manifests_need_no_files() -> None:
    fake = FakeKubernetesServer(manifests={"./k8s/shop/": sample_app_manifests("shop", "shop:1")})
    applied = await call(
        fake, "kubectl_apply", KubectlApplyArgs(manifest_path="./k8s/shop/", namespace="prod")
    )
    assert applied.applied_resources == ["deployment/shop", "service/shop"]
    assert fake.get("Service", "shop", "prod") is not None
    status = KubectlRolloutStatusArgs(name="shop", namespace="prod")
    assert (await call(fake, "kubectl_rollout_status", status)).ready
    with pytest.raises(ToolArgumentError) as err:  # unknown paths still read the disk
        await call(fake, "kubectl_apply", KubectlApplyArgs(manifest_path="./k8s/nope/"))
    assert err.value.fields == ("manifest_path",)
