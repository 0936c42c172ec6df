"""The HTTP side of the kubernetes adapter: configuration, requests, error mapping, discovery.

Requests go through kubernetes-asyncio's ``ApiClient.call_api`` (the same path its
typed APIs and its dynamic client use), so kubeconfig, in-cluster service accounts,
token refresh and TLS settings all behave as in kubernetes-asyncio. Objects travel as
plain dicts: the adapter serves any kind, built-in or custom, without model classes.
"""

from __future__ import annotations

import json
from typing import Any

import aiohttp
from kubernetes_asyncio import config as k8s_config
from kubernetes_asyncio.client import ApiClient, Configuration
from kubernetes_asyncio.client.rest import ApiException
from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator

from schemas.tools.kubernetes import ResourceKind, find_builtin, find_builtin_kind
from tools.errors import ToolArgumentError, ToolFailed, ToolTimeout, ToolTransientError

JSON = "application/json"
MERGE_PATCH = "application/merge-patch+json"
STRATEGIC_MERGE_PATCH = "application/strategic-merge-patch+json"
JSON_PATCH = "application/json-patch+json"
APPLY_PATCH = "application/apply-patch+yaml"


class KubernetesConfig(BaseModel):
    """How to reach the API server: explicit host, in-cluster, or a kubeconfig.

    With none of ``host`` / ``in_cluster`` / ``kubeconfig`` set, the default kubeconfig
    (``$KUBECONFIG`` or ``~/.kube/config``) is loaded with ``context``.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    host: str | None = Field(default=None, description="e.g. https://10.0.0.1:6443")
    token: SecretStr | None = None
    verify_ssl: bool = True
    ca_cert: str | None = Field(default=None, description="CA bundle path for host")
    in_cluster: bool = False
    kubeconfig: str | None = None
    context: str | None = None
    default_namespace: str = "default"
    field_manager: str = "codebus"
    request_timeout: float = Field(default=30.0, gt=0)
    rollout_poll_interval: float = Field(default=2.0, gt=0)
    max_log_bytes: int = Field(default=1_000_000, gt=0)

    @model_validator(mode="after")
    def _one_source(self) -> KubernetesConfig:
        sources = [self.host is not None, self.in_cluster, self.kubeconfig is not None]
        if sum(sources) > 1:
            raise ValueError("set only one of host, in_cluster and kubeconfig")
        if self.token is not None and self.host is None:
            raise ValueError("token is only used with host")
        return self


async def build_api_client(cfg: KubernetesConfig) -> ApiClient:
    """An ``ApiClient`` configured from ``cfg`` (loads kubeconfig/in-cluster files)."""
    conf = Configuration()
    if cfg.host is not None:
        conf.host = cfg.host.rstrip("/")
        conf.verify_ssl = cfg.verify_ssl
        conf.ssl_ca_cert = cfg.ca_cert
        if cfg.token is not None:
            conf.api_key = {"BearerToken": cfg.token.get_secret_value()}
            conf.api_key_prefix = {"BearerToken": "Bearer"}
    else:
        try:
            if cfg.in_cluster:
                k8s_config.load_incluster_config(client_configuration=conf)
            else:
                await k8s_config.load_kube_config(
                    config_file=cfg.kubeconfig, context=cfg.context, client_configuration=conf
                )
        except (k8s_config.ConfigException, OSError) as exc:
            # A missing or broken kubeconfig will not fix itself on retry.
            raise ToolFailed(f"kubernetes configuration: {exc}", tool="kubernetes") from exc
    return ApiClient(configuration=conf)


def api_message(exc: ApiException) -> str:
    """The ``message`` of the API's Status body, else the HTTP reason."""
    raw: Any = exc.body
    body = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
    try:
        status = json.loads(body) if body else {}
    except ValueError:
        return (str(body).strip() or str(exc.reason))[:500]
    if isinstance(status, dict) and status.get("message"):
        return str(status["message"])
    return str(exc.reason)


def map_api_error(exc: ApiException, *, tool: str, doing: str) -> Exception:
    """HTTP 5xx/429 (and status 0: no response) are transient, other 4xx permanent."""
    status = int(exc.status or 0)
    message = f"{doing}: HTTP {status}: {api_message(exc)}"
    if status >= 500 or status in (0, 429):
        return ToolTransientError(message, tool=tool, status=status or None)
    return ToolFailed(message, tool=tool, status=status)


def unreachable(exc: BaseException, *, tool: str, doing: str) -> ToolTransientError:
    """A connection failure or client timeout: transient (a timeout as ToolTimeout)."""
    if isinstance(exc, TimeoutError):
        return ToolTimeout(f"{doing}: the API server did not answer in time", tool=tool)
    return ToolTransientError(f"{doing}: cannot reach the API server: {exc!r}", tool=tool)


def resource_path(
    res: ResourceKind, namespace: str | None, name: str | None = None, sub: str | None = None
) -> str:
    """``/apis/apps/v1/namespaces/ns/deployments/name/scale`` and its shorter forms."""
    base = f"/apis/{res.group}/{res.version}" if res.group else f"/api/{res.version}"
    if res.namespaced and namespace is not None:
        base += f"/namespaces/{namespace}"
    path = f"{base}/{res.plural}"
    if name is not None:
        path += f"/{name}"
    if sub is not None:
        path += f"/{sub}"
    return path


class KubeClient:
    """Dict-in, dict-out requests to the API server, with tool-level errors."""

    def __init__(self, api: ApiClient, cfg: KubernetesConfig) -> None:
        self.api = api
        self.cfg = cfg
        self._discovered: dict[tuple[str, str], list[dict[str, Any]]] = {}

    async def request(
        self,
        method: str,
        path: str,
        *,
        tool: str,
        doing: str,
        query: dict[str, Any] | None = None,
        body: Any = None,
        content_type: str = JSON,
    ) -> Any:
        """One API call; returns the decoded JSON body. Raises ToolTransientError/ToolFailed."""
        params = [(k, v) for k, v in (query or {}).items() if v is not None]
        try:
            return await self.api.call_api(
                path,
                method,
                query_params=params,
                header_params={"Content-Type": content_type, "Accept": JSON},
                body=body,
                response_types_map={200: "object", 201: "object", 202: "object"},
                auth_settings=["BearerToken"],
                _return_http_data_only=True,
                _request_timeout=self.cfg.request_timeout,
            )
        except ApiException as exc:
            raise map_api_error(exc, tool=tool, doing=doing) from exc
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            raise unreachable(exc, tool=tool, doing=doing) from exc

    async def raw(self, path: str, *, tool: str, doing: str, query: dict[str, Any]) -> bytes:
        """A GET whose body is plain text (pod logs), read raw so JSON-looking lines survive."""
        params = [(k, v) for k, v in query.items() if v is not None]
        try:
            resp = await self.api.call_api(
                path,
                "GET",
                query_params=params,
                header_params={"Accept": "text/plain"},
                auth_settings=["BearerToken"],
                _preload_content=False,
                _request_timeout=self.cfg.request_timeout,
            )
            async with resp:
                raw = await resp.read()
                if not 200 <= resp.status <= 299:
                    err = ApiException(status=resp.status, reason=resp.reason)
                    err.body = raw
                    raise map_api_error(err, tool=tool, doing=doing)
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            raise unreachable(exc, tool=tool, doing=doing) from exc
        return raw

    async def _resources_of(self, group: str, version: str, *, tool: str) -> list[dict[str, Any]]:
        key = (group, version)
        if key not in self._discovered:
            path = f"/apis/{group}/{version}" if group else f"/api/{version}"
            listing = await self.request(
                "GET", path, tool=tool, doing=f"discover {group or 'core'}/{version}"
            )
            self._discovered[key] = list(listing.get("resources") or [])
        return self._discovered[key]

    async def resolve_type(self, resource_type: str, *, tool: str) -> ResourceKind:
        """``resource_type`` (alias or ``plural.group``) to a resource, via discovery if needed."""
        builtin = find_builtin(resource_type)
        if builtin is not None:
            return builtin
        plural, _, group = resource_type.partition(".")
        try:
            info = await self.request("GET", f"/apis/{group}", tool=tool, doing=f"discover {group}")
        except ToolFailed as exc:
            raise ToolArgumentError(
                f"resource_type: API group {group!r} is not served ({exc})",
                tool=tool,
                fields=("resource_type",),
            ) from exc
        version = info["preferredVersion"]["version"]
        for res in await self._resources_of(group, version, tool=tool):
            if res.get("name") == plural:
                return ResourceKind(
                    res["kind"], group, version, plural, bool(res.get("namespaced"))
                )
        raise ToolArgumentError(
            f"resource_type: {group}/{version} has no resource {plural!r}",
            tool=tool,
            fields=("resource_type",),
        )

    async def resolve_kind(self, api_version: str, kind: str, *, tool: str) -> ResourceKind:
        """A manifest's ``apiVersion``/``kind`` to a resource, via discovery if not built in."""
        builtin = find_builtin_kind(api_version, kind)
        if builtin is not None:
            return builtin
        group, _, version = api_version.rpartition("/")
        try:
            resources = await self._resources_of(group, version, tool=tool)
        except ToolFailed as exc:
            raise ToolFailed(
                f"no API {api_version} on the server for kind {kind} ({exc})", tool=tool
            ) from exc
        for res in resources:
            if res.get("kind") == kind and "/" not in res.get("name", ""):
                return ResourceKind(kind, group, version, res["name"], bool(res.get("namespaced")))
        raise ToolFailed(f"the server has no kind {kind} in {api_version}", tool=tool, status=404)
