"""A small Azure DevOps stand-in (aiohttp) that checks request shapes like the service.

Every request must carry HTTP Basic auth that decodes to ``":" + pat`` and an
``api-version`` query parameter. Work item writes must be ``application/json-patch+json``
JSON Patch arrays with valid ops and ``/fields/...`` paths. Work items, pipeline runs
and builds live in memory and come back in Azure DevOps' JSON shapes (``id``, ``rev``,
``fields``, ``_links``, ``url``); errors come back as ``{"message": ..., "typeKey": ...}``.
WIQL is evaluated with the fake adapter's small parser (``parse_wiql``).
"""

from __future__ import annotations

import base64
import itertools
import json
import re
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestServer

from tools.fakes.azure_devops import parse_wiql

_OPS = {"add", "replace", "remove", "test", "copy", "move"}
_FIELD_PATH = re.compile(r"^/fields/([A-Za-z][A-Za-z0-9_]*(?:\.[A-Za-z0-9_]+)+)$")
NOW = "2026-01-01T00:00:00Z"


@dataclass
class AdoStub:
    """In-memory organization ``org`` with projects, work items, pipelines and builds."""

    pat: str
    org: str = "org"
    projects: list[str] = field(default_factory=lambda: ["Operations", "Platform", "Web"])
    pipelines: dict[int, str] = field(default_factory=lambda: {7: "deploy", 8: "ci"})
    types: set[str] = field(default_factory=lambda: {"Task", "Bug", "User Story", "Epic"})
    work_items: dict[int, dict[str, Any]] = field(default_factory=dict)
    builds: dict[int, dict[str, Any]] = field(default_factory=dict)
    requests: list[dict[str, Any]] = field(default_factory=list)
    canned: list[tuple[int, dict[str, str], str]] = field(default_factory=list)
    signin_page_for_bad_pat: bool = False
    base: str = ""
    _ids: Any = field(default_factory=lambda: itertools.count(1))
    _runs: Any = field(default_factory=lambda: itertools.count(100))

    def fail_next(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        """Answer the next request with an Azure DevOps-style error."""
        self.canned.append((status, headers or {}, message))

    def finish_build(self, build_id: int, result: str) -> None:
        """Mark a build completed with ``result`` (succeeded, failed, ...)."""
        self.builds[build_id].update(status="completed", result=result, finishTime=NOW)

    @property
    def app(self) -> web.Application:
        """The aiohttp application; routes mirror the REST API paths."""
        app = web.Application(middlewares=[self._checks])
        org = "/{org}"
        proj = "/{org}/{project}"
        r = app.router
        r.add_get(f"{org}/_apis/projects", self._projects)
        r.add_post(proj + "/_apis/wit/workitems/{wtype}", self._create)
        for prefix in (org, proj):
            item = prefix + r"/_apis/wit/workitems/{id:\d+}"
            r.add_get(item, self._get)
            r.add_patch(item, self._update)
            r.add_delete(item, self._delete)
        r.add_get(proj + "/_apis/wit/workitems", self._batch)
        r.add_post(proj + "/_apis/wit/wiql", self._wiql)
        r.add_post(proj + r"/_apis/pipelines/{pid:\d+}/runs", self._run)
        r.add_get(proj + r"/_apis/build/builds/{bid:\d+}", self._build)
        return app

    # -- request checks ------------------------------------------------------------

    @web.middleware
    async def _checks(self, request: web.Request, handler: Any) -> web.StreamResponse:
        raw = await request.read()
        self.requests.append(
            {
                "method": request.method,
                "path": request.path,
                "query": dict(request.query),
                "content_type": request.headers.get("Content-Type"),
                "body": json.loads(raw) if raw else None,
            }
        )
        if self.canned:
            status, headers, message = self.canned.pop(0)
            return _error(status, message, headers=headers)
        expected = "Basic " + base64.b64encode(f":{self.pat}".encode()).decode()
        if request.headers.get("Authorization") != expected:
            if self.signin_page_for_bad_pat:
                return web.Response(
                    status=203, text="<html>Sign in</html>", content_type="text/html"
                )
            return _error(401, "TF400813: The user is not authorized to access this resource.")
        if request.query.get("api-version") != "7.1":
            return _error(400, "No api-version was supplied or it is not 7.1.", "VssVersion")
        if request.match_info.get("org") != self.org:
            return _error(404, f"Organization {request.match_info.get('org')} not found.")
        project = request.match_info.get("project")
        if project is not None and project not in self.projects:
            return _error(404, f"TF200016: The following project does not exist: {project}.")
        return await handler(request)

    async def _patch_body(self, request: web.Request) -> list[dict[str, Any]] | web.Response:
        if request.content_type != "application/json-patch+json":
            return _error(415, "VS403402: use application/json-patch+json", "ContentType")
        ops = await request.json()
        if not isinstance(ops, list) or not ops:
            return _error(400, "You must pass a valid patch document in the body.")
        for op in ops:
            if not isinstance(op, dict) or op.get("op") not in _OPS:
                return _error(400, f"Invalid patch operation: {op!r}")
            path = op.get("path", "")
            if not (_FIELD_PATH.match(path) or (op["op"] == "test" and path == "/rev")):
                return _error(400, f"Invalid patch path: {path!r}")
            if op["op"] in {"add", "replace", "test"} and "value" not in op:
                return _error(400, f"Patch operation {op['op']} at {path} needs a value.")
        return ops

    # -- work items ------------------------------------------------------------------

    def _item_json(self, item: dict[str, Any]) -> dict[str, Any]:
        url = f"{self.base}/{self.org}/_apis/wit/workItems/{item['id']}"
        project = item["fields"]["System.TeamProject"]
        return {
            "id": item["id"],
            "rev": item["rev"],
            "fields": dict(item["fields"]),
            "_links": {
                "self": {"href": url},
                "html": {"href": f"{self.base}/{self.org}/{project}/_workitems/edit/{item['id']}"},
            },
            "url": url,
        }

    def _find(self, request: web.Request) -> dict[str, Any] | web.Response:
        number = int(request.match_info["id"])
        item = self.work_items.get(number)
        project = request.match_info.get("project")
        if (
            item is None
            or item["deleted"]
            or (project and item["fields"]["System.TeamProject"] != project)
        ):
            return _error(404, f"TF401232: Work item {number} does not exist.")
        return item

    async def _create(self, request: web.Request) -> web.Response:
        wtype = request.match_info["wtype"]
        if not wtype.startswith("$") or wtype[1:] not in self.types:
            return _error(404, f"VS402323: Work item type {wtype} does not exist.")
        ops = await self._patch_body(request)
        if isinstance(ops, web.Response):
            return ops
        project = request.match_info["project"]
        fields: dict[str, Any] = {
            "System.TeamProject": project,
            "System.AreaPath": project,
            "System.IterationPath": project,
            "System.WorkItemType": wtype[1:],
            "System.State": "New",
            "System.Reason": "New",
            "System.CreatedDate": NOW,
        }
        for op in ops:
            if op["op"] in {"add", "replace"}:
                fields[_FIELD_PATH.match(op["path"]).group(1)] = op["value"]  # type: ignore[union-attr]
        if not fields.get("System.Title"):
            return _error(400, "TF401320: Rule Error for field Title. Error code: Required.")
        number = next(self._ids)
        fields["System.Id"] = number
        item = {"id": number, "rev": 1, "fields": fields, "deleted": False}
        self.work_items[number] = item
        return web.json_response(self._item_json(item))

    async def _get(self, request: web.Request) -> web.Response:
        item = self._find(request)
        return item if isinstance(item, web.Response) else web.json_response(self._item_json(item))

    async def _update(self, request: web.Request) -> web.Response:
        item = self._find(request)
        if isinstance(item, web.Response):
            return item
        ops = await self._patch_body(request)
        if isinstance(ops, web.Response):
            return ops
        fields = dict(item["fields"])
        for op in ops:
            if op["op"] == "test" and op["path"] == "/rev":
                if op["value"] != item["rev"]:
                    return _error(412, f"TF26071: work item changed; rev is {item['rev']}.")
                continue
            name = _FIELD_PATH.match(op["path"]).group(1)  # type: ignore[union-attr]
            if op["op"] == "remove":
                fields.pop(name, None)
            elif op["op"] in {"add", "replace"}:
                fields[name] = op["value"]
        item.update(fields=fields, rev=item["rev"] + 1)
        return web.json_response(self._item_json(item))

    async def _delete(self, request: web.Request) -> web.Response:
        item = self._find(request)
        if isinstance(item, web.Response):
            return item
        item["deleted"] = True
        return web.json_response({"id": item["id"], "code": 200, "deletedDate": NOW})

    async def _batch(self, request: web.Request) -> web.Response:
        ids = [int(i) for i in request.query.get("ids", "").split(",") if i]
        if not ids or len(ids) > 200:
            return _error(400, "ids must list 1 to 200 work item ids.")
        omit = request.query.get("errorPolicy", "").lower() == "omit"
        found: list[dict[str, Any] | None] = []
        for number in ids:
            item = self.work_items.get(number)
            if item is None or item["deleted"]:
                if not omit:
                    return _error(404, f"TF401232: Work item {number} does not exist.")
                found.append(None)
            else:
                found.append(self._item_json(item))
        return web.json_response({"count": len(found), "value": found})

    async def _wiql(self, request: web.Request) -> web.Response:
        if request.content_type != "application/json":
            return _error(415, "WIQL takes application/json")
        body = await request.json()
        try:
            query = parse_wiql(str(body.get("query", "")))
        except ValueError as exc:
            return _error(400, str(exc))
        project = request.match_info["project"]
        top = int(request.query.get("$top", "200"))
        hits = [
            item
            for item in self.work_items.values()
            if not item["deleted"]
            and item["fields"]["System.TeamProject"] == project
            and query.matches(item["fields"], project)
        ]
        hits.sort(key=lambda i: i["id"], reverse=query.descending)
        refs = [
            {"id": i["id"], "url": f"{self.base}/{self.org}/_apis/wit/workItems/{i['id']}"}
            for i in hits[:top]
        ]
        return web.json_response({"queryType": "flat", "asOf": NOW, "workItems": refs})

    # -- projects, pipelines, builds ------------------------------------------------

    async def _projects(self, request: web.Request) -> web.Response:
        top = int(request.query.get("$top", "100"))
        start = int(request.query.get("continuationToken", "0"))
        page = self.projects[start : start + top]
        headers = {}
        if start + top < len(self.projects):
            headers["x-ms-continuationtoken"] = str(start + top)
        value = [
            {
                "id": f"00000000-0000-0000-0000-{i:012d}",
                "name": name,
                "state": "wellFormed",
                "visibility": "private",
                "url": f"{self.base}/{self.org}/_apis/projects/{name}",
            }
            for i, name in enumerate(page, start)
        ]
        return web.json_response({"count": len(value), "value": value}, headers=headers)

    async def _run(self, request: web.Request) -> web.Response:
        pid = int(request.match_info["pid"])
        if pid not in self.pipelines:
            return _error(404, f"Pipeline with id {pid} not found.")
        if request.content_type != "application/json":
            return _error(415, "runs take application/json")
        body = await request.json()
        try:
            ref = body["resources"]["repositories"]["self"]["refName"]
        except (KeyError, TypeError):
            ref = "refs/heads/main"
        if not isinstance(ref, str) or not ref.startswith("refs/"):
            return _error(400, f"Invalid refName {ref!r}.")
        for name, var in (body.get("variables") or {}).items():
            if not isinstance(var, dict) or not isinstance(var.get("value"), str):
                return _error(400, f"Variable {name} must be {{'value': str}}.")
        project = request.match_info["project"]
        run_id = next(self._runs)
        web_url = f"{self.base}/{self.org}/{project}/_build/results?buildId={run_id}"
        self.builds[run_id] = {
            "id": run_id,
            "buildNumber": f"20260101.{run_id}",
            "status": "inProgress",
            "result": None,
            "sourceBranch": ref,
            "definition": {"id": pid, "name": self.pipelines[pid]},
            "queueTime": NOW,
            "startTime": NOW,
            "finishTime": None,
            "project": project,
            "variables": body.get("variables") or {},
            "templateParameters": body.get("templateParameters") or {},
            "_links": {"web": {"href": web_url}},
        }
        return web.json_response(
            {
                "id": run_id,
                "name": f"20260101.{run_id}",
                "state": "inProgress",
                "result": None,
                "pipeline": {"id": pid, "name": self.pipelines[pid]},
                "url": f"{self.base}/{self.org}/{project}/_apis/pipelines/{pid}/runs/{run_id}",
                "_links": {"web": {"href": web_url}},
            }
        )

    async def _build(self, request: web.Request) -> web.Response:
        build = self.builds.get(int(request.match_info["bid"]))
        if build is None or build["project"] != request.match_info["project"]:
            return _error(404, f"Build {request.match_info['bid']} does not exist.")
        return web.json_response(build)


def _error(
    status: int, message: str, type_key: str = "", headers: dict[str, str] | None = None
) -> web.Response:
    body = {"$id": "1", "message": message, "typeKey": type_key or "VssServiceException"}
    return web.json_response(body, status=status, headers=headers)


async def start_ado_stub(stub: AdoStub) -> TestServer:
    """Serve ``stub`` on a free loopback port and point its links at it."""
    server = TestServer(stub.app, host="127.0.0.1")
    await server.start_server()
    stub.base = str(server.make_url("")).rstrip("/")
    return server
