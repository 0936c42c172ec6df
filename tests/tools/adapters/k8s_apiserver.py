"""A small, strict Kubernetes API server (aiohttp) for the kubernetes adapter tests.

kmock (the HTTP-level emulator on PyPI) stores objects as merged JSON: it answers a
server-side apply of a new object with 404, ignores ``dryRun``, has no ``/scale`` or
``/log`` semantics, no label selectors and no resourceVersion/generation. This server
checks what the real API server checks for the requests the adapter makes:

* bearer token on every request (401 otherwise);
* paths ``/api/v1/...`` and ``/apis/{group}/{version}/...``, namespaced or cluster-wide,
  plus discovery documents (``/apis/{group}``, ``/apis/{group}/{version}``);
* PATCH content types: ``application/apply-patch+yaml`` (needs ``fieldManager``; creates
  missing objects; field-ownership conflicts give 409 unless ``force=true``),
  merge, strategic-merge and JSON patch; anything else 415;
* ``dryRun=All`` computes the answer without storing it; other ``dryRun`` values 400;
* ``/scale`` (autoscaling/v1 Scale) and ``/log`` (text, tailLines, limitBytes, container);
* DELETE with background garbage collection of owned objects;
* a deployment controller that advances one step each time a Deployment is read.

``fail_next(status)`` makes the next request fail with that status (500, 429, ...).
"""

from __future__ import annotations

import asyncio
import copy
import json
from dataclasses import dataclass, field
from typing import Any

import yaml
from aiohttp import web

from tests.tools.adapters.k8s_controller import tick
from tests.tools.adapters.k8s_patches import PatchError, json_patch, merge_patch, selector_matches
from tests.tools.adapters.k8s_state import RESOURCES, ApiState, Resource, find_resource

APPLY = "application/apply-patch+yaml"
MERGE = ("application/merge-patch+json", "application/strategic-merge-patch+json")
JSON_PATCH = "application/json-patch+json"


class StatusError(Exception):
    """An API error answered as a ``Status`` document."""

    def __init__(self, code: int, reason: str, message: str) -> None:
        super().__init__(message)
        self.code, self.reason, self.message = code, reason, message


def _status_body(code: int, reason: str, message: str) -> dict[str, Any]:
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure" if code >= 400 else "Success",
        "message": message,
        "reason": reason,
        "code": code,
    }


@dataclass
class Recorded:
    """One request as the server received it."""

    method: str
    path: str
    query: dict[str, str]
    content_type: str
    headers: dict[str, str]
    body: bytes


@dataclass
class FakeApiServer:
    """The HTTP side; ``state`` holds the objects, ``requests`` every request seen."""

    token: str = "test-token"
    state: ApiState = field(default_factory=ApiState)
    requests: list[Recorded] = field(default_factory=list)
    delay: float = 0.0  # seconds every answer waits (client timeout tests)
    _failures: list[tuple[int, str, str]] = field(default_factory=list)

    def fail_next(
        self, code: int, message: str = "injected failure", times: int = 1, path: str = ""
    ) -> None:
        """The next ``times`` requests (whose path contains ``path``) answer ``code``."""
        self._failures.extend([(code, message, path)] * times)

    def app(self) -> web.Application:
        """The aiohttp application."""
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        return app

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        self.requests.append(
            Recorded(
                request.method,
                request.path,
                dict(request.query),
                request.content_type,
                dict(request.headers),
                body,
            )
        )
        if self.delay:
            await asyncio.sleep(self.delay)
        try:
            if request.headers.get("Authorization") != f"Bearer {self.token}":
                raise StatusError(401, "Unauthorized", "Unauthorized")
            for failure in self._failures:
                code, message, path = failure
                if path in request.path:
                    self._failures.remove(failure)
                    raise StatusError(code, "InjectedFailure", message)
            return await self._route(request, body)
        except StatusError as err:
            return web.json_response(
                _status_body(err.code, err.reason, err.message), status=err.code
            )

    # ---- routing ---------------------------------------------------------------------------

    async def _route(self, request: web.Request, body: bytes) -> web.StreamResponse:
        parts = [p for p in request.path.split("/") if p]
        if parts[:2] == ["api", "v1"]:
            group, version, rest = "", "v1", parts[2:]
        elif parts and parts[0] == "apis" and len(parts) >= 3:
            group, version, rest = parts[1], parts[2], parts[3:]
        elif parts and parts[0] == "apis" and len(parts) == 2 and request.method == "GET":
            return web.json_response(self._group_doc(parts[1]))
        else:
            raise StatusError(404, "NotFound", "the server could not find the requested resource")
        if not rest and request.method == "GET":
            return web.json_response(self._resource_list(group, version))
        namespace: str | None = None
        if len(rest) >= 3 and rest[0] == "namespaces":
            namespace, rest = rest[1], rest[2:]
        res = find_resource(group, version, rest[0]) if rest else None
        if res is None or len(rest) > 3 or (namespace is not None and not res.namespaced):
            raise StatusError(404, "NotFound", "the server could not find the requested resource")
        name = rest[1] if len(rest) > 1 else None
        sub = rest[2] if len(rest) > 2 else None
        if res.namespaced and name is not None and namespace is None:
            raise StatusError(404, "NotFound", "the server could not find the requested resource")
        query = dict(request.query)
        dry = query.get("dryRun")
        if dry not in (None, "All"):
            raise StatusError(400, "BadRequest", f"Invalid dryRun value {dry!r}: must be All")
        if request.method == "GET" and name is None:
            return self._list(res, namespace, query)
        if name is None:
            raise StatusError(405, "MethodNotAllowed", "the server does not allow this method")
        if sub == "scale" and res.scalable:
            return self._scale(request, res, namespace, name, body)
        if sub == "log" and res.kind == "Pod" and request.method == "GET":
            return self._log(res, namespace, name, query)
        if sub is not None:
            raise StatusError(404, "NotFound", "the server could not find the requested resource")
        if request.method == "GET":
            return web.json_response(self._existing(res, namespace, name, observe=True))
        if request.method == "PATCH":
            return self._patch(request, res, namespace, name, body, dry == "All")
        if request.method == "DELETE":
            return self._delete(res, namespace, name, body, dry == "All")
        raise StatusError(405, "MethodNotAllowed", "the server does not allow this method")

    def _group_doc(self, group: str) -> dict[str, Any]:
        versions = sorted({r.version for r in RESOURCES if r.group == group})
        if not versions:
            raise StatusError(404, "NotFound", "the server could not find the requested resource")
        gv = [{"groupVersion": f"{group}/{v}", "version": v} for v in versions]
        return {
            "kind": "APIGroup",
            "apiVersion": "v1",
            "name": group,
            "versions": gv,
            "preferredVersion": gv[0],
        }

    def _resource_list(self, group: str, version: str) -> dict[str, Any]:
        served = [r for r in RESOURCES if (r.group, r.version) == (group, version)]
        if not served:
            raise StatusError(404, "NotFound", "the server could not find the requested resource")
        entries: list[dict[str, Any]] = []
        for r in served:
            entries.append(
                {
                    "name": r.plural,
                    "singularName": r.kind.lower(),
                    "namespaced": r.namespaced,
                    "kind": r.kind,
                    "verbs": ["create", "delete", "get", "list", "patch", "update"],
                }
            )
            if r.scalable:
                entries.append(
                    {
                        "name": f"{r.plural}/scale",
                        "singularName": "",
                        "namespaced": r.namespaced,
                        "kind": "Scale",
                        "group": "autoscaling",
                        "version": "v1",
                        "verbs": ["get", "patch", "update"],
                    }
                )
        gv = f"{group}/{version}" if group else version
        return {"kind": "APIResourceList", "groupVersion": gv, "resources": entries}

    # ---- verbs -----------------------------------------------------------------------------

    def _not_found(self, res: Resource, name: str) -> StatusError:
        qualified = f"{res.plural}.{res.group}" if res.group else res.plural
        return StatusError(404, "NotFound", f'{qualified} "{name}" not found')

    def _existing(
        self, res: Resource, namespace: str | None, name: str, *, observe: bool = False
    ) -> dict[str, Any]:
        obj = self.state.get(res, namespace, name)
        if obj is None:
            raise self._not_found(res, name)
        if observe and res.kind == "Deployment":
            obj = tick(self.state, obj)  # the controller makes progress while clients poll
        return copy.deepcopy(obj)

    def _list(self, res: Resource, namespace: str | None, query: dict[str, str]) -> web.Response:
        selector = query.get("labelSelector")
        items = []
        for obj in self.state.select(res, namespace):
            try:
                if not selector_matches(selector, obj["metadata"].get("labels") or {}):
                    continue
            except ValueError as exc:
                raise StatusError(400, "BadRequest", str(exc)) from exc
            item = copy.deepcopy(obj)
            item.pop("apiVersion", None)  # the real server omits these in list items
            item.pop("kind", None)
            items.append(item)
        return web.json_response(
            {
                "kind": f"{res.kind}List",
                "apiVersion": res.api_version,
                "metadata": {"resourceVersion": "1"},
                "items": items,
            }
        )

    def _decode(self, body: bytes, content_type: str) -> Any:
        try:
            return yaml.safe_load(body) if content_type == APPLY else json.loads(body)
        except (ValueError, yaml.YAMLError) as exc:
            raise StatusError(400, "BadRequest", f"cannot decode body: {exc}") from exc

    def _patch(
        self,
        request: web.Request,
        res: Resource,
        namespace: str | None,
        name: str,
        body: bytes,
        dry: bool,
    ) -> web.Response:
        ctype, query = request.content_type, request.query
        if ctype == APPLY:
            return self._apply(res, namespace, name, self._decode(body, ctype), query, dry)
        if "force" in query:
            raise StatusError(400, "BadRequest", "force is only allowed for apply patches")
        if ctype not in (*MERGE, JSON_PATCH):
            raise StatusError(
                415,
                "UnsupportedMediaType",
                "the body of the request was in an unknown format - accepted media types include: "
                f"{APPLY}, {', '.join(MERGE)}, {JSON_PATCH}",
            )
        current = self._existing(res, namespace, name)
        patch = self._decode(body, ctype)
        try:
            new = json_patch(current, patch) if ctype == JSON_PATCH else merge_patch(current, patch)
        except (PatchError, KeyError, TypeError) as exc:
            raise StatusError(422, "Invalid", str(exc)) from exc
        if new.get("metadata", {}).get("name") != name:
            raise StatusError(422, "Invalid", "metadata.name: Invalid value: field is immutable")
        return web.json_response(new if dry else self.state.write(res, namespace, new))

    def _apply(
        self,
        res: Resource,
        namespace: str | None,
        name: str,
        obj: Any,
        query: Any,
        dry: bool,
    ) -> web.Response:
        manager = query.get("fieldManager")
        if not manager:
            raise StatusError(400, "BadRequest", "fieldManager is required for apply requests")
        if not isinstance(obj, dict):
            raise StatusError(400, "BadRequest", "apply body must be an object")
        if (obj.get("apiVersion"), obj.get("kind")) != (res.api_version, res.kind):
            raise StatusError(
                400,
                "BadRequest",
                f"the body is {obj.get('apiVersion')}/{obj.get('kind')}, "
                f"the URL {res.api_version}/{res.kind}",
            )
        meta = obj.get("metadata") or {}
        if meta.get("name") != name:
            raise StatusError(
                400,
                "BadRequest",
                f"the name of the object ({meta.get('name')}) does not match "
                f"the name on the URL ({name})",
            )
        if res.namespaced and meta.get("namespace") not in (None, namespace):
            raise StatusError(
                400,
                "BadRequest",
                "the namespace of the object does not match the namespace on the request",
            )
        key = (res, namespace, name)
        current = self.state.get(res, namespace, name)
        conflicts = self.state.conflicts(key, obj, manager)
        if conflicts and query.get("force") != "true":
            detail = "; ".join(f'conflict with "{m}": {p}' for m, p in conflicts)
            raise StatusError(
                409, "Conflict", f"Apply failed with {len(conflicts)} conflict(s): {detail}"
            )
        new = (
            self.state.prepare(res, namespace, obj)
            if current is None
            else merge_patch(current, obj)
        )
        if dry:
            return web.json_response(new, status=201 if current is None else 200)
        stored = self.state.write(res, namespace, new)
        self.state.own(key, obj, manager)
        return web.json_response(stored, status=201 if current is None else 200)

    def _delete(
        self, res: Resource, namespace: str | None, name: str, body: bytes, dry: bool
    ) -> web.Response:
        obj = self._existing(res, namespace, name)
        if body:
            options = self._decode(body, "application/json")
            if options.get("propagationPolicy") not in (None, "Background", "Foreground", "Orphan"):
                raise StatusError(400, "BadRequest", "invalid propagationPolicy")
        if not dry:
            self.state.delete(res, namespace, name)
        details = {
            "name": name,
            "group": res.group,
            "kind": res.plural,
            "uid": obj["metadata"]["uid"],
        }
        return web.json_response({**_status_body(200, "", ""), "details": details})

    def _scale(
        self, request: web.Request, res: Resource, namespace: str | None, name: str, body: bytes
    ) -> web.Response:
        obj = self._existing(res, namespace, name)
        if request.method == "PATCH":
            if request.content_type not in MERGE:
                raise StatusError(415, "UnsupportedMediaType", "scale accepts merge patches here")
            patch = self._decode(body, request.content_type)
            replicas = (patch.get("spec") or {}).get("replicas")
            if not isinstance(replicas, int) or replicas < 0:
                raise StatusError(422, "Invalid", "spec.replicas: Invalid value: must be >= 0")
            obj["spec"]["replicas"] = replicas
            obj = self.state.write(res, namespace, obj)
        elif request.method != "GET":
            raise StatusError(405, "MethodNotAllowed", "the server does not allow this method")
        meta = obj["metadata"]
        return web.json_response(
            {
                "kind": "Scale",
                "apiVersion": "autoscaling/v1",
                "metadata": {k: meta[k] for k in ("name", "namespace", "uid", "resourceVersion")},
                "spec": {"replicas": obj["spec"].get("replicas", 1)},
                "status": {"replicas": (obj.get("status") or {}).get("replicas", 0)},
            }
        )

    def _log(
        self, res: Resource, namespace: str | None, name: str, query: dict[str, str]
    ) -> web.Response:
        pod = self._existing(res, namespace, name)
        containers = [c["name"] for c in pod.get("spec", {}).get("containers", [])]
        container = query.get("container")
        if container is None and len(containers) != 1:
            raise StatusError(
                400,
                "BadRequest",
                f"a container name must be specified for pod {name}, choose one of: {containers}",
            )
        container = container or containers[0]
        if container not in containers:
            raise StatusError(
                400, "BadRequest", f"container {container} is not valid for pod {name}"
            )
        text = self.state.logs.get((namespace or "", name, container), "")
        if "tailLines" in query:
            lines = text.splitlines(keepends=True)
            tail = int(query["tailLines"])
            text = "".join(lines[-tail:]) if tail else ""
        data = text.encode()
        if "limitBytes" in query:
            data = data[: int(query["limitBytes"])]
        return web.Response(body=data, content_type="text/plain")


async def serve(server: FakeApiServer) -> tuple[web.AppRunner, str]:
    """Start ``server`` on a free loopback port; returns the runner and the base URL."""
    runner = web.AppRunner(server.app())
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    return runner, f"http://127.0.0.1:{port}"
