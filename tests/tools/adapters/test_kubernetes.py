"""The ``kubernetes`` adapter over real HTTP against the strict test API server.

See ``k8s_apiserver.py`` for what the server checks and why it is not kmock. Every
test drives the adapter through its bound tools, as the registry will.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import BaseModel, ValidationError

from schemas.tools.kubernetes import (
    KubectlApplyArgs,
    KubectlDeleteArgs,
    KubectlGetArgs,
    KubectlLogsArgs,
    KubectlRolloutArgs,
    KubectlRolloutStatusArgs,
    KubectlScaleArgs,
)
from tests.helpers import assert_names_field
from tests.tools.adapters.k8s_apiserver import FakeApiServer, serve
from tests.tools.adapters.k8s_state import by_kind
from tools.adapters.kubernetes import KubernetesConfig, KubernetesServer, RolloutTimeout
from tools.errors import ToolArgumentError, ToolFailed, ToolTimeout, ToolTransientError

Call = Callable[[str, BaseModel], Any]


def deployment(name: str = "web", image: str = "nginx:1.25", replicas: int = 2) -> dict[str, Any]:
    """A Deployment manifest without a namespace."""
    labels = {"app": name}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "labels": labels},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {"containers": [{"name": name, "image": image}]},
            },
        },
    }


SERVICE = {
    "apiVersion": "v1",
    "kind": "Service",
    "metadata": {"name": "web"},
    "spec": {"selector": {"app": "web"}, "ports": [{"port": 80}]},
}
CONFIG_MAP = {
    "apiVersion": "v1",
    "kind": "ConfigMap",
    "metadata": {"name": "web-config"},
    "data": {"LEVEL": "info"},
}


@pytest.fixture
def manifests(tmp_path: Path) -> Path:
    """A directory: deployment.yaml, a multi-document service.yml, and a non-manifest."""
    root = tmp_path / "k8s"
    root.mkdir()
    (root / "deployment.yaml").write_text(yaml.safe_dump(deployment()))
    (root / "service.yml").write_text(yaml.safe_dump_all([SERVICE, None, CONFIG_MAP]))
    (root / "README.md").write_text("not a manifest")
    return root


@pytest.fixture
async def api() -> AsyncIterator[tuple[FakeApiServer, str]]:
    """The test API server on a free port."""
    server = FakeApiServer()
    runner, url = await serve(server)
    yield server, url
    await runner.cleanup()


@pytest.fixture
async def kube(api: tuple[FakeApiServer, str]) -> AsyncIterator[KubernetesServer]:
    """The adapter pointed at the test server, polling fast."""
    server, url = api
    cfg = KubernetesConfig(host=url, token=server.token, rollout_poll_interval=0.01)
    adapter = KubernetesServer(cfg)
    await adapter.start()
    yield adapter
    await adapter.close()


@pytest.fixture
def call(kube: KubernetesServer) -> Call:
    """Call a tool by its short name with an args model."""
    tools = {t.spec.tool: t for t in kube.tools()}

    async def _call(tool: str, args: BaseModel) -> Any:
        return await tools[tool].call(args)

    return _call


def state_of(server: FakeApiServer, kind: str, ns: str | None, name: str) -> dict[str, Any] | None:
    """The stored object, straight from the server's state."""
    return server.state.get(by_kind(kind), ns, name)


# ---- tool specs --------------------------------------------------------------------------


def test_tool_names_and_read_only_flags(kube: KubernetesServer) -> None:
    specs = {t.spec.name: t.spec for t in kube.tools()}
    assert set(specs) == {
        "kubernetes.kubectl_apply",
        "kubernetes.kubectl_get",
        "kubernetes.kubectl_delete",
        "kubernetes.kubectl_scale",
        "kubernetes.kubectl_rollout_status",
        "kubernetes.kubectl_rollout",
        "kubernetes.kubectl_logs",
    }
    read_only = {name for name, spec in specs.items() if spec.read_only}
    assert read_only == {
        "kubernetes.kubectl_get",
        "kubernetes.kubectl_logs",
        "kubernetes.kubectl_rollout_status",
    }


# ---- apply -------------------------------------------------------------------------------


async def test_apply_directory_is_server_side_apply(
    call: Call, api: tuple[FakeApiServer, str], manifests: Path
) -> None:
    server, _ = api
    result = await call(
        "kubectl_apply", KubectlApplyArgs(manifest_path=str(manifests), namespace="shop")
    )
    assert [(r.kind, r.name, r.namespace, r.action) for r in result.resources] == [
        ("Deployment", "web", "shop", "created"),
        ("Service", "web", "shop", "created"),
        ("ConfigMap", "web-config", "shop", "created"),
    ]
    assert result.status == "created"
    assert result.applied_resources == ["deployment/web", "service/web", "configmap/web-config"]
    assert state_of(server, "ConfigMap", "shop", "web-config")["data"] == {"LEVEL": "info"}

    patches = [r for r in server.requests if r.method == "PATCH"]
    assert [p.path for p in patches] == [
        "/apis/apps/v1/namespaces/shop/deployments/web",
        "/api/v1/namespaces/shop/services/web",
        "/api/v1/namespaces/shop/configmaps/web-config",
    ]
    for p in patches:
        assert p.content_type == "application/apply-patch+yaml"
        assert p.query == {"fieldManager": "codebus", "force": "false"}
        assert p.headers["Authorization"] == f"Bearer {server.token}"
        assert json.loads(p.body)["metadata"]["namespace"] == "shop"

    again = await call(
        "kubectl_apply", KubectlApplyArgs(manifest_path=str(manifests), namespace="shop")
    )
    assert again.status == "unchanged"
    assert {r.action for r in again.resources} == {"unchanged"}


async def test_apply_change_is_configured(
    call: Call, api: tuple[FakeApiServer, str], tmp_path: Path
) -> None:
    server, _ = api
    file = tmp_path / "dep.json"
    file.write_text(json.dumps(deployment(image="nginx:1.25")))
    await call("kubectl_apply", KubectlApplyArgs(manifest_path=str(file)))
    file.write_text(json.dumps(deployment(image="nginx:1.26")))
    result = await call("kubectl_apply", KubectlApplyArgs(manifest_path=str(file)))
    assert [(r.namespace, r.action) for r in result.resources] == [("default", "configured")]
    stored = state_of(server, "Deployment", "default", "web")
    assert stored["spec"]["template"]["spec"]["containers"][0]["image"] == "nginx:1.26"
    assert stored["metadata"]["generation"] == 2


async def test_dry_run_leaves_no_state(
    call: Call, api: tuple[FakeApiServer, str], manifests: Path
) -> None:
    server, _ = api
    result = await call(
        "kubectl_apply", KubectlApplyArgs(manifest_path=str(manifests), dry_run=True)
    )
    assert result.dry_run and result.status == "created"
    assert server.state.objects == {}
    assert all(r.query.get("dryRun") == "All" for r in server.requests if r.method == "PATCH")


async def test_apply_conflict_is_409_unless_forced(
    api: tuple[FakeApiServer, str], call: Call, tmp_path: Path
) -> None:
    server, url = api
    other = KubernetesServer(KubernetesConfig(host=url, token=server.token, field_manager="helm"))
    file = tmp_path / "dep.yaml"
    file.write_text(yaml.safe_dump(deployment(replicas=2)))
    apply = {t.spec.tool: t for t in other.tools()}["kubectl_apply"]
    await apply.call(KubectlApplyArgs(manifest_path=str(file)))
    await other.close()

    file.write_text(yaml.safe_dump(deployment(replicas=5)))
    with pytest.raises(ToolFailed) as err:
        await call("kubectl_apply", KubectlApplyArgs(manifest_path=str(file)))
    assert err.value.status == 409
    assert 'conflict with "helm"' in str(err.value) and ".spec.replicas" in str(err.value)

    forced = await call("kubectl_apply", KubectlApplyArgs(manifest_path=str(file), force=True))
    assert forced.resources[0].action == "configured"
    assert state_of(server, "Deployment", "default", "web")["spec"]["replicas"] == 5


async def test_apply_custom_resource_uses_discovery(
    call: Call, api: tuple[FakeApiServer, str], tmp_path: Path
) -> None:
    server, _ = api
    file = tmp_path / "widget.yaml"
    file.write_text(
        "apiVersion: example.com/v1\nkind: Widget\nmetadata: {name: w1}\nspec: {size: 3}\n"
    )
    result = await call("kubectl_apply", KubectlApplyArgs(manifest_path=str(file), namespace="a"))
    assert result.resources[0].action == "created"
    assert any(r.path == "/apis/example.com/v1" for r in server.requests)
    got = await call(
        "kubectl_get", KubectlGetArgs(resource_type="widgets.example.com", namespace="a")
    )
    assert [i["spec"]["size"] for i in got.items] == [3]


async def test_apply_bad_manifests_name_the_field(call: Call, tmp_path: Path) -> None:
    with pytest.raises(ToolArgumentError) as missing:
        await call("kubectl_apply", KubectlApplyArgs(manifest_path=str(tmp_path / "nope")))
    assert missing.value.fields == ("manifest_path",)
    bad = tmp_path / "bad.yaml"
    bad.write_text("apiVersion: v1\nkind: ConfigMap\nmetadata: {}\n")
    with pytest.raises(ToolArgumentError, match=r"metadata\.name"):
        await call("kubectl_apply", KubectlApplyArgs(manifest_path=str(bad)))
    other_ns = tmp_path / "ns.yaml"
    other_ns.write_text(yaml.safe_dump({**CONFIG_MAP, "metadata": {"name": "c", "namespace": "x"}}))
    with pytest.raises(ToolArgumentError) as mismatch:
        await call("kubectl_apply", KubectlApplyArgs(manifest_path=str(other_ns), namespace="y"))
    assert mismatch.value.fields == ("namespace",)


# ---- get / scale / delete ----------------------------------------------------------------


async def test_get_lists_and_fetches(
    call: Call, api: tuple[FakeApiServer, str], manifests: Path
) -> None:
    server, _ = api
    await call("kubectl_apply", KubectlApplyArgs(manifest_path=str(manifests)))
    server.state.add(
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "other", "namespace": "default", "labels": {"tier": "x"}},
        }
    )
    listed = await call("kubectl_get", KubectlGetArgs(resource_type="cm"))
    assert sorted(i["metadata"]["name"] for i in listed.items) == ["other", "web-config"]
    assert {i["kind"] for i in listed.items} == {"ConfigMap"}  # filled in like kubectl does
    selected = await call(
        "kubectl_get", KubectlGetArgs(resource_type="configmaps", label_selector="tier=x")
    )
    assert [i["metadata"]["name"] for i in selected.items] == ["other"]
    assert server.requests[-1].query == {"labelSelector": "tier=x"}
    one = await call("kubectl_get", KubectlGetArgs(resource_type="Deployment", name="web"))
    assert one.kind == "Deployment" and one.items[0]["spec"]["replicas"] == 2
    everywhere = await call(
        "kubectl_get", KubectlGetArgs(resource_type="deploy", all_namespaces=True)
    )
    assert server.requests[-1].path == "/apis/apps/v1/deployments"
    assert len(everywhere.items) == 1
    with pytest.raises(ToolFailed) as missing:
        await call("kubectl_get", KubectlGetArgs(resource_type="svc", name="ghost"))
    assert missing.value.status == 404 and 'services "ghost" not found' in str(missing.value)


async def test_scale_patches_the_scale_subresource(
    call: Call, api: tuple[FakeApiServer, str], manifests: Path
) -> None:
    server, _ = api
    await call("kubectl_apply", KubectlApplyArgs(manifest_path=str(manifests)))
    result = await call(
        "kubectl_scale", KubectlScaleArgs(resource_type="deploy", name="web", replicas=4)
    )
    assert (result.success, result.previous_replicas, result.replicas) == (True, 2, 4)
    patch = server.requests[-1]
    assert patch.method == "PATCH" and patch.path.endswith("/deployments/web/scale")
    assert patch.content_type == "application/merge-patch+json"
    assert json.loads(patch.body) == {"spec": {"replicas": 4}}
    assert state_of(server, "Deployment", "default", "web")["spec"]["replicas"] == 4


async def test_delete_by_name_and_manifest(
    call: Call, api: tuple[FakeApiServer, str], manifests: Path
) -> None:
    server, _ = api
    await call("kubectl_apply", KubectlApplyArgs(manifest_path=str(manifests)))
    dry = await call(
        "kubectl_delete", KubectlDeleteArgs(resource_type="svc", name="web", dry_run=True)
    )
    assert dry.deleted[0].status == "deleted" and state_of(server, "Service", "default", "web")
    gone = await call("kubectl_delete", KubectlDeleteArgs(resource_type="service", name="web"))
    assert gone.success and state_of(server, "Service", "default", "web") is None
    delete = server.requests[-1]
    assert delete.method == "DELETE" and delete.path == "/api/v1/namespaces/default/services/web"
    assert json.loads(delete.body)["propagationPolicy"] == "Background"

    rest = await call("kubectl_delete", KubectlDeleteArgs(manifest_path=str(manifests)))
    assert [(d.kind, d.status) for d in rest.deleted] == [
        ("Deployment", "deleted"),
        ("Service", "not_found"),
        ("ConfigMap", "deleted"),
    ]
    assert rest.success is False
    assert server.state.objects == {}
    with pytest.raises(ToolFailed) as strict:
        await call(
            "kubectl_delete",
            KubectlDeleteArgs(resource_type="cm", name="web-config", ignore_not_found=False),
        )
    assert strict.value.status == 404


async def test_delete_namespace_is_cluster_scoped(
    call: Call, api: tuple[FakeApiServer, str]
) -> None:
    server, _ = api
    server.state.add({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "blue"}})
    server.state.add(
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "namespace": "blue"}}
    )
    result = await call(
        "kubectl_delete", KubectlDeleteArgs(resource_type="namespace", name="blue", force=True)
    )
    assert result.deleted[0].namespace is None
    assert server.requests[-1].path == "/api/v1/namespaces/blue"
    assert json.loads(server.requests[-1].body)["gracePeriodSeconds"] == 0
    assert server.state.objects == {}


# ---- rollouts ----------------------------------------------------------------------------


async def _apply_deployment(call: Call, tmp_path: Path, **kw: Any) -> Path:
    file = tmp_path / "dep.yaml"
    file.write_text(yaml.safe_dump(deployment(**kw)))
    await call("kubectl_apply", KubectlApplyArgs(manifest_path=str(file)))
    return file


async def test_rollout_status_waits_for_the_controller(
    call: Call, api: tuple[FakeApiServer, str], tmp_path: Path
) -> None:
    server, _ = api
    await _apply_deployment(call, tmp_path, replicas=3)
    result = await call("kubectl_rollout_status", KubectlRolloutStatusArgs(name="web", timeout=10))
    assert result.ready and result.status == "success"
    assert (result.replicas, result.updated_replicas, result.available_replicas) == (3, 3, 3)
    assert result.observed_generation == result.generation == 1
    polls = [
        r for r in server.requests if r.method == "GET" and r.path.endswith("/deployments/web")
    ]
    assert len(polls) >= 6  # observe + 3 x (add pod, pod available): really waited


async def test_rollout_status_times_out_with_last_status(call: Call, tmp_path: Path) -> None:
    await _apply_deployment(call, tmp_path, image="nginx:broken")
    with pytest.raises(RolloutTimeout) as err:
        await call("kubectl_rollout_status", KubectlRolloutStatusArgs(name="web", timeout=0.3))
    assert isinstance(err.value, ToolTransientError)
    last = err.value.last_status
    assert (last.updated_replicas, last.available_replicas, last.ready) == (2, 0, False)
    assert "0 of 2 updated replicas are available" in str(err.value)


async def test_rollout_status_fails_fast_on_progress_deadline(call: Call, tmp_path: Path) -> None:
    await _apply_deployment(call, tmp_path, image="nginx:deadline")
    with pytest.raises(ToolFailed, match="exceeded its progress deadline"):
        await call("kubectl_rollout_status", KubectlRolloutStatusArgs(name="web", timeout=5))


async def test_rollout_restart_and_undo(
    call: Call, api: tuple[FakeApiServer, str], tmp_path: Path
) -> None:
    server, _ = api
    status = KubectlRolloutStatusArgs(name="web", timeout=10)
    file = await _apply_deployment(call, tmp_path, image="nginx:1.25")
    await call("kubectl_rollout_status", status)
    file.write_text(yaml.safe_dump(deployment(image="nginx:1.26")))
    await call("kubectl_apply", KubectlApplyArgs(manifest_path=str(file)))
    await call("kubectl_rollout_status", status)

    undo = await call("kubectl_rollout", KubectlRolloutArgs(action="undo", name="web"))
    assert (undo.changed, undo.revision) == (True, 1)
    patch = server.requests[-1]
    assert patch.content_type == "application/json-patch+json"
    assert [op["path"] for op in json.loads(patch.body)] == [
        "/spec/template",
        "/metadata/annotations",
    ]
    done = await call("kubectl_rollout_status", status)
    assert done.ready
    dep = state_of(server, "Deployment", "default", "web")
    assert dep["spec"]["template"]["spec"]["containers"][0]["image"] == "nginx:1.25"
    assert "pod-template-hash" not in dep["spec"]["template"]["metadata"]["labels"]
    assert dep["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "3"

    restart = await call("kubectl_rollout", KubectlRolloutArgs(action="restart", name="web"))
    assert restart.changed
    annotations = state_of(server, "Deployment", "default", "web")["spec"]["template"]["metadata"][
        "annotations"
    ]
    assert "kubectl.kubernetes.io/restartedAt" in annotations
    assert server.requests[-1].content_type == "application/strategic-merge-patch+json"
    assert (await call("kubectl_rollout_status", status)).ready

    # Undo with to_revision picks that exact revision (3 is the restarted template's parent).
    back = await call(
        "kubectl_rollout", KubectlRolloutArgs(action="undo", name="web", to_revision=3)
    )
    assert back.changed and back.revision == 3
    with pytest.raises(ToolFailed, match="unable to find specified revision 99"):
        await call("kubectl_rollout", KubectlRolloutArgs(action="undo", name="web", to_revision=99))


async def test_rollout_undo_without_history_fails(call: Call, tmp_path: Path) -> None:
    await _apply_deployment(call, tmp_path)
    await call("kubectl_rollout_status", KubectlRolloutStatusArgs(name="web", timeout=10))
    with pytest.raises(ToolFailed, match="no rollout history found"):
        await call("kubectl_rollout", KubectlRolloutArgs(action="undo", name="web"))


async def test_rollout_pause_and_resume(
    call: Call, api: tuple[FakeApiServer, str], tmp_path: Path
) -> None:
    server, _ = api
    await _apply_deployment(call, tmp_path)
    paused = await call("kubectl_rollout", KubectlRolloutArgs(action="pause", name="web"))
    assert paused.changed and state_of(server, "Deployment", "default", "web")["spec"]["paused"]
    again = await call("kubectl_rollout", KubectlRolloutArgs(action="pause", name="web"))
    assert (again.changed, again.message) == (False, "already paused")
    with pytest.raises(ToolFailed, match="can't restart paused deployment"):
        await call("kubectl_rollout", KubectlRolloutArgs(action="restart", name="web"))
    resumed = await call("kubectl_rollout", KubectlRolloutArgs(action="resume", name="web"))
    assert (
        resumed.changed and not state_of(server, "Deployment", "default", "web")["spec"]["paused"]
    )


# ---- logs --------------------------------------------------------------------------------


async def test_logs_tail_container_and_cap(api: tuple[FakeApiServer, str], call: Call) -> None:
    server, url = api
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "web-1", "namespace": "default"},
        "spec": {"containers": [{"name": "app"}, {"name": "sidecar"}]},
    }
    server.state.add(pod)
    server.state.logs[("default", "web-1", "app")] = '{"level": "info"}\nline 2\nline 3\n'
    logs = await call(
        "kubectl_logs", KubectlLogsArgs(pod_name="web-1", container="app", tail_lines=2)
    )
    assert logs.logs == "line 2\nline 3\n" and logs.lines == 2 and not logs.truncated
    assert server.requests[-1].path == "/api/v1/namespaces/default/pods/web-1/log"
    assert server.requests[-1].query["tailLines"] == "2"
    json_line = await call(
        "kubectl_logs", KubectlLogsArgs(name="web-1", container="app", tail_lines=3)
    )
    assert json_line.logs.startswith('{"level": "info"}\n')  # not parsed as JSON
    with pytest.raises(ToolFailed, match="a container name must be specified") as err:
        await call("kubectl_logs", KubectlLogsArgs(pod_name="web-1"))
    assert err.value.status == 400

    capped = KubernetesServer(KubernetesConfig(host=url, token=server.token, max_log_bytes=10))
    tools = {t.spec.tool: t for t in capped.tools()}
    cut = await tools["kubectl_logs"].call(KubectlLogsArgs(pod_name="web-1", container="app"))
    await capped.close()
    assert cut.truncated and cut.logs == '{"level": '


# ---- error mapping -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "error"),
    [
        (500, ToolTransientError),
        (503, ToolTransientError),
        (429, ToolTransientError),
        (403, ToolFailed),
    ],
)
async def test_http_errors_map_to_tool_errors(
    call: Call, api: tuple[FakeApiServer, str], code: int, error: type[Exception]
) -> None:
    server, _ = api
    server.fail_next(code, message=f"boom {code}")
    with pytest.raises(error) as err:
        await call("kubectl_get", KubectlGetArgs(resource_type="pods"))
    assert err.value.status == code and f"boom {code}" in str(err.value)
    assert type(err.value) is error  # 5xx is not a ToolFailed and vice versa


async def test_rollout_status_survives_a_transient_blip(
    call: Call, api: tuple[FakeApiServer, str], tmp_path: Path
) -> None:
    server, _ = api
    await _apply_deployment(call, tmp_path, replicas=1)
    server.fail_next(503)
    assert (
        await call("kubectl_rollout_status", KubectlRolloutStatusArgs(name="web", timeout=10))
    ).ready


async def test_bad_token_is_permanent(api: tuple[FakeApiServer, str]) -> None:
    _, url = api
    adapter = KubernetesServer(KubernetesConfig(host=url, token="wrong"))
    get = {t.spec.tool: t for t in adapter.tools()}["kubectl_get"]
    with pytest.raises(ToolFailed) as err:
        await get.call(KubectlGetArgs(resource_type="pods"))
    await adapter.close()
    assert err.value.status == 401


async def test_connection_refused_is_transient() -> None:
    adapter = KubernetesServer(KubernetesConfig(host="http://127.0.0.1:9", token="t"))
    get = {t.spec.tool: t for t in adapter.tools()}["kubectl_get"]
    with pytest.raises(ToolTransientError, match="cannot reach the API server"):
        await get.call(KubectlGetArgs(resource_type="pods"))
    await adapter.close()


# ---- argument validation -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "data", "field"),
    [
        (KubectlGetArgs, {"resource_type": "gizmos"}, "resource_type"),
        (KubectlGetArgs, {"resource_type": "pods", "namespace": "Bad_NS"}, "namespace"),
        (KubectlScaleArgs, {"name": "web", "replicas": -1}, "replicas"),
        (KubectlScaleArgs, {"resource_type": "svc", "name": "web", "replicas": 1}, "resource_type"),
        (KubectlRolloutStatusArgs, {"name": "web", "timeout": 0}, "timeout"),
        (KubectlRolloutStatusArgs, {"resource_type": "pods", "name": "web"}, "resource_type"),
        (KubectlRolloutArgs, {"action": "explode", "name": "web"}, "action"),
        (KubectlApplyArgs, {"manifest_path": "x", "dryrun": True}, "dryrun"),
        (KubectlLogsArgs, {"pod_name": "p", "tail_lines": -5}, "tail_lines"),
    ],
)
def test_bad_arguments_name_the_field(
    model: type[BaseModel], data: dict[str, Any], field: str
) -> None:
    assert_names_field(model, data, field)


def test_delete_needs_exactly_one_target() -> None:
    with pytest.raises(ValidationError, match="exactly one of name"):
        KubectlDeleteArgs(resource_type="svc")
    with pytest.raises(ValidationError, match="resource_type is required"):
        KubectlDeleteArgs(name="web")
    assert KubectlDeleteArgs(resource_type="namespace", name="blue", force=True).force


def test_config_rejects_two_sources() -> None:
    with pytest.raises(ValidationError, match="only one of host, in_cluster and kubeconfig"):
        KubernetesConfig(host="https://x", in_cluster=True)


async def test_kubeconfig_context_is_loaded(api: tuple[FakeApiServer, str], tmp_path: Path) -> None:
    server, url = api
    kubeconfig = tmp_path / "config"
    kubeconfig.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "emu", "cluster": {"server": url}}],
                "users": [{"name": "ci", "user": {"token": server.token}}],
                "contexts": [{"name": "test", "context": {"cluster": "emu", "user": "ci"}}],
                "current-context": "other",
            }
        )
    )
    adapter = KubernetesServer(KubernetesConfig(kubeconfig=str(kubeconfig), context="test"))
    get = {t.spec.tool: t for t in adapter.tools()}["kubectl_get"]
    result = await get.call(KubectlGetArgs(resource_type="pods"))
    await adapter.close()
    assert result.items == [] and server.requests[-1].path == "/api/v1/namespaces/default/pods"

    missing = KubernetesServer(KubernetesConfig(kubeconfig=str(tmp_path / "absent")))
    with pytest.raises(ToolFailed, match="kubernetes configuration"):
        await missing.start()


async def test_apply_failure_names_what_was_applied(
    call: Call, api: tuple[FakeApiServer, str], manifests: Path
) -> None:
    server, _ = api
    server.fail_next(500, "etcd unavailable", path="/services/web")
    with pytest.raises(ToolTransientError) as err:
        await call("kubectl_apply", KubectlApplyArgs(manifest_path=str(manifests)))
    assert err.value.status == 500
    assert "etcd unavailable" in str(err.value)
    assert "applied before the failure: deployment/web" in str(err.value)


async def test_unknown_kind_aborts_before_any_write(
    call: Call, api: tuple[FakeApiServer, str], manifests: Path
) -> None:
    server, _ = api
    gadget = {"apiVersion": "example.com/v1", "kind": "Gadget", "metadata": {"name": "g"}}
    (manifests / "zz-gadget.yaml").write_text(yaml.safe_dump(gadget))
    with pytest.raises(ToolFailed, match=r"no kind Gadget in example\.com/v1"):
        await call("kubectl_apply", KubectlApplyArgs(manifest_path=str(manifests)))
    assert [r for r in server.requests if r.method == "PATCH"] == []
    assert server.state.objects == {}


async def test_slow_api_server_is_a_timeout(api: tuple[FakeApiServer, str]) -> None:
    server, url = api
    server.delay = 1.0
    adapter = KubernetesServer(KubernetesConfig(host=url, token=server.token, request_timeout=0.2))
    get = {t.spec.tool: t for t in adapter.tools()}["kubectl_get"]
    with pytest.raises(ToolTimeout, match="did not answer in time"):
        await get.call(KubectlGetArgs(resource_type="pods"))
    await adapter.close()
