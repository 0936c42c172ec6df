"""The kubernetes tool arguments the flows added: inline ``objects`` for kubectl_apply and
``watch: false`` for kubectl_rollout_status, on the real adapter (strict stand-in) and the
fake."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio
from pydantic import ValidationError

from schemas.tools.kubernetes import KubectlApplyArgs, KubectlRolloutStatusArgs
from tests.flows.helpers import deployment, service
from tests.tools.adapters.k8s_apiserver import FakeApiServer, serve
from tools.adapters.kubernetes import KubernetesServer
from tools.adapters.kubernetes_client import KubernetesConfig
from tools.fakes.kubernetes import FakeKubernetesServer


@pytest_asyncio.fixture
async def real() -> AsyncIterator[Any]:
    api = FakeApiServer()
    runner, url = await serve(api)
    server = KubernetesServer(KubernetesConfig(host=url, token=api.token, verify_ssl=False))  # type: ignore[arg-type]
    await server.start()
    try:
        yield server
    finally:
        await server.close()
        await runner.cleanup()


def test_exactly_one_manifest_source() -> None:
    for bad in ({}, {"manifest_path": "/x.yaml", "objects": [service()]}):
        with pytest.raises(ValidationError, match="manifest_path or objects"):
            KubectlApplyArgs.model_validate(bad)


@pytest.mark.parametrize("kind", ["real", "fake"])
async def test_inline_objects_and_one_status_observation(kind: str, real: Any) -> None:
    server = real if kind == "real" else FakeKubernetesServer()
    objects = [deployment("web", "web:1", 3), service("web")]
    applied = await server.kubectl_apply(KubectlApplyArgs(objects=objects, namespace="shop"))
    assert applied.applied_resources == ["deployment/web", "service/web"]
    again = await server.kubectl_apply(KubectlApplyArgs(objects=objects, namespace="shop"))
    assert again.status == "unchanged"  # absolute: a repeat changes nothing
    args = KubectlRolloutStatusArgs(name="web", namespace="shop", watch=False)
    seen = []
    for _ in range(20):
        status = await server.kubectl_rollout_status(args)
        seen.append(status.status)
        if status.ready:
            break
    # never waits, never raises for an unfinished rollout; the stand-in progresses per read
    assert seen[-1] == "success"
    if kind == "real":
        assert "progressing" in seen


async def test_inline_object_errors_name_the_field(real: Any) -> None:
    from tools.errors import ToolArgumentError

    with pytest.raises(ToolArgumentError, match=r"objects: object 1 lacks metadata\.name"):
        await real.kubectl_apply(
            KubectlApplyArgs(objects=[{"apiVersion": "v1", "kind": "Service"}])
        )
