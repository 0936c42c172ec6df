"""The ``azure-devops`` tool server: Azure DevOps REST API 7.1 over aiohttp.

Authentication is a personal access token sent as HTTP Basic with an empty user name.
Work items are created and updated with JSON Patch documents
(``application/json-patch+json``). Error bodies carry a ``message`` that goes into the
raised error; the token never does.

Azure DevOps has one trap worth knowing: a bad or expired PAT may be answered with a
redirect or a ``203`` HTML sign-in page instead of a 401. Redirects are not followed
and any non-JSON success is reported as an authentication failure.
"""

from __future__ import annotations

import base64
import json
from typing import Any
from urllib.parse import quote, urlencode

import aiohttp
from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator
from yarl import URL

from schemas.tools.azure_devops import (
    BuildStatus,
    CreateWorkItemArgs,
    GetBuildStatusArgs,
    ListProjectsArgs,
    ListProjectsResult,
    ManageWorkItemsArgs,
    ManageWorkItemsResult,
    PipelineRun,
    Project,
    RunPipelineArgs,
    WorkItem,
)
from tools.adapters.http_session import HttpSessionServer
from tools.errors import ToolFailed, ToolTimeout, ToolTransientError
from tools.spec import tool

SERVER = "azure-devops"
JSON_PATCH = "application/json-patch+json"
_JSON = "application/json"
#: The work-items batch endpoint accepts at most 200 ids per request.
_BATCH = 200


class AzureDevOpsConfig(BaseModel):
    """Organization URL and credentials."""

    model_config = ConfigDict(extra="forbid")

    organization_url: str = Field(description="https://dev.azure.com/<org>")
    personal_access_token: SecretStr
    api_version: str = "7.1"
    timeout: float = Field(default=30.0, gt=0)

    @field_validator("organization_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not value.startswith(("https://", "http://")):
            raise ValueError("must be an http(s) URL such as https://dev.azure.com/myorg")
        return value.rstrip("/")


def create_patch(args: CreateWorkItemArgs) -> list[dict[str, Any]]:
    """The JSON Patch document that creates a work item from ``args``."""
    fields: dict[str, Any] = {"System.Title": args.title}
    if args.description:
        fields["System.Description"] = args.description
    if args.assigned_to:
        fields["System.AssignedTo"] = args.assigned_to
    if args.area_path:
        fields["System.AreaPath"] = args.area_path
    if args.iteration_path:
        fields["System.IterationPath"] = args.iteration_path
    if args.tags:
        fields["System.Tags"] = "; ".join(args.tags)
    if args.priority is not None:
        fields["Microsoft.VSTS.Common.Priority"] = args.priority
    fields.update(args.fields)
    return [
        {"op": "add", "path": f"/fields/{name}", "value": value} for name, value in fields.items()
    ]


def update_patch(fields: dict[str, Any], expected_rev: int | None) -> list[dict[str, Any]]:
    """The JSON Patch document of an update; a ``None`` value removes the field."""
    ops: list[dict[str, Any]] = []
    if expected_rev is not None:
        # A failing "test" op rejects the whole patch: optimistic concurrency.
        ops.append({"op": "test", "path": "/rev", "value": expected_rev})
    for name, value in fields.items():
        if value is None:
            ops.append({"op": "remove", "path": f"/fields/{name}"})
        else:
            # "add" on an existing field replaces it, and works when it is unset.
            ops.append({"op": "add", "path": f"/fields/{name}", "value": value})
    return ops


def _href(body: dict[str, Any], link: str) -> str | None:
    target = (body.get("_links") or {}).get(link) or {}
    return target.get("href")


def work_item_from(body: dict[str, Any]) -> WorkItem:
    """Parse a work item answer."""
    return WorkItem(
        id=body["id"],
        rev=body.get("rev", 0),
        url=body.get("url", ""),
        fields=body.get("fields") or {},
        web_url=_href(body, "html"),
    )


def _segment(value: str) -> str:
    return quote(value, safe="")


class AzureDevOpsServer(HttpSessionServer):
    """Work items, projects, pipelines and builds in one Azure DevOps organization."""

    name = SERVER

    def __init__(self, config: AzureDevOpsConfig, *, session: aiohttp.ClientSession | None = None):
        super().__init__(session)
        self.config = config
        token = f":{config.personal_access_token.get_secret_value()}".encode()
        self._auth = "Basic " + base64.b64encode(token).decode()

    def new_session(self) -> aiohttp.ClientSession:
        """A session with the configured timeout."""
        return aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.config.timeout))

    def _url(
        self, *segments: str, project: str | None = None, params: dict[str, Any] | None = None
    ) -> URL:
        parts = [self.config.organization_url]
        if project:
            parts.append(_segment(project))
        parts.extend(segments)
        query = {"api-version": self.config.api_version}
        query.update({k: v for k, v in (params or {}).items() if v is not None})
        return URL("/".join(parts) + "?" + urlencode(query), encoded=True)

    async def _request(
        self,
        tool_name: str,
        method: str,
        url: URL,
        body: Any = None,
        *,
        content_type: str = _JSON,
    ) -> tuple[Any, Any]:
        await self.start()
        assert self._session is not None
        sent = {"Authorization": self._auth, "Accept": _JSON}
        data = None
        if body is not None:
            sent["Content-Type"] = content_type
            data = json.dumps(body, default=str).encode()
        try:
            async with self._session.request(
                method, url, data=data, headers=sent, allow_redirects=False
            ) as response:
                text = await response.text()
                decoded = _decode(tool_name, response.status, response.headers, text)
                received = response.headers
        except (TimeoutError, aiohttp.ServerTimeoutError) as exc:
            raise ToolTimeout("Azure DevOps did not answer in time", tool=tool_name) from exc
        except aiohttp.ClientError as exc:
            raise ToolTransientError(f"Azure DevOps unreachable: {exc}", tool=tool_name) from exc
        # Every endpoint used here answers a JSON object, except DELETE which may be empty.
        if not isinstance(decoded, dict) and method != "DELETE":
            raise ToolTransientError("Azure DevOps answered without a JSON object", tool=tool_name)
        return decoded, received

    @tool()
    async def create_work_item(self, args: CreateWorkItemArgs) -> WorkItem:
        """Create a work item (Task, Bug, ...) with a title, description and fields."""
        url = self._url(
            "_apis/wit/workitems", "$" + _segment(args.work_item_type), project=args.project
        )
        name = f"{SERVER}.create_work_item"
        body, _ = await self._request(
            name, "POST", url, create_patch(args), content_type=JSON_PATCH
        )
        return work_item_from(body)

    @tool()
    async def manage_work_items(self, args: ManageWorkItemsArgs) -> ManageWorkItemsResult:
        """Get, update, delete one work item, or list the items a WIQL query selects."""
        name = f"{SERVER}.manage_work_items"
        result = ManageWorkItemsResult(action=args.action)
        if args.action == "list":
            result.work_items = await self._query(name, args)
            return result
        item = str(args.work_item_id)
        if args.action == "get":
            url = self._url("_apis/wit/workitems", item, project=args.project)
            body, _ = await self._request(name, "GET", url)
            result.work_items = [work_item_from(body)]
        elif args.action == "update":
            url = self._url("_apis/wit/workitems", item, project=args.project)
            patch = update_patch(args.fields, args.expected_rev)
            body, _ = await self._request(name, "PATCH", url, patch, content_type=JSON_PATCH)
            result.work_items = [work_item_from(body)]
        else:
            destroy = "true" if args.destroy else None
            url = self._url(
                "_apis/wit/workitems", item, project=args.project, params={"destroy": destroy}
            )
            await self._request(name, "DELETE", url)
            result.deleted_id = args.work_item_id
        return result

    async def _query(self, name: str, args: ManageWorkItemsArgs) -> list[WorkItem]:
        assert args.project is not None and args.query is not None
        url = self._url("_apis/wit/wiql", project=args.project, params={"$top": args.top})
        body, _ = await self._request(name, "POST", url, {"query": args.query})
        ids = [ref["id"] for ref in (body or {}).get("workItems", [])]
        items: list[WorkItem] = []
        for start in range(0, len(ids), _BATCH):
            chunk = ",".join(str(i) for i in ids[start : start + _BATCH])
            # errorPolicy=omit: an item deleted between the query and the fetch comes
            # back as null instead of failing the whole batch.
            batch_url = self._url(
                "_apis/wit/workitems",
                project=args.project,
                params={"ids": chunk, "errorPolicy": "omit"},
            )
            batch, _ = await self._request(name, "GET", batch_url)
            items.extend(work_item_from(v) for v in (batch or {}).get("value", []) if v)
        return items

    @tool(read_only=True)
    async def list_projects(self, args: ListProjectsArgs) -> ListProjectsResult:
        """List the organization's projects."""
        url = self._url(
            "_apis/projects",
            params={"$top": args.top, "continuationToken": args.continuation_token},
        )
        body, headers = await self._request(f"{SERVER}.list_projects", "GET", url)
        projects = [
            Project(
                id=p["id"],
                name=p["name"],
                state=p.get("state"),
                description=p.get("description"),
                visibility=p.get("visibility"),
                url=p.get("url"),
            )
            for p in (body or {}).get("value", [])
        ]
        token = headers.get("x-ms-continuationtoken")
        return ListProjectsResult(projects=projects, continuation_token=token or None)

    @tool()
    async def run_pipeline(self, args: RunPipelineArgs) -> PipelineRun:
        """Queue a pipeline run on a branch, with variables and template parameters."""
        url = self._url("_apis/pipelines", str(args.pipeline_id), "runs", project=args.project)
        request: dict[str, Any] = {
            "resources": {"repositories": {"self": {"refName": args.ref_name}}},
        }
        if args.variables:
            request["variables"] = {
                key: {"value": value, "isSecret": False} for key, value in args.variables.items()
            }
        if args.template_parameters:
            request["templateParameters"] = args.template_parameters
        body, _ = await self._request(f"{SERVER}.run_pipeline", "POST", url, request)
        return PipelineRun(
            id=body["id"],
            name=body.get("name"),
            pipeline_id=(body.get("pipeline") or {}).get("id", args.pipeline_id),
            state=body.get("state", "unknown"),
            result=body.get("result"),
            url=body.get("url"),
            web_url=_href(body, "web"),
        )

    @tool(read_only=True)
    async def get_build_status(self, args: GetBuildStatusArgs) -> BuildStatus:
        """Read a build's status and result (a pipeline run id is also a build id)."""
        url = self._url("_apis/build/builds", str(args.build_id), project=args.project)
        body, _ = await self._request(f"{SERVER}.get_build_status", "GET", url)
        return BuildStatus(
            id=body["id"],
            build_number=body.get("buildNumber"),
            status=body.get("status", "unknown"),
            result=body.get("result"),
            source_branch=body.get("sourceBranch"),
            definition=(body.get("definition") or {}).get("name"),
            queue_time=body.get("queueTime"),
            start_time=body.get("startTime"),
            finish_time=body.get("finishTime"),
            web_url=_href(body, "web"),
        )


def _error_message(text: str) -> str:
    try:
        body = json.loads(text)
    except ValueError:
        return text[:200] or "no details"
    if isinstance(body, dict) and body.get("message"):
        return str(body["message"])
    return text[:200]


def _decode(tool_name: str, status: int, headers: Any, text: str) -> Any:
    """The JSON body of a successful answer, or the right ToolError."""
    if status == 429 or status >= 500:
        retry = headers.get("Retry-After")
        hint = f" (retry after {retry}s)" if retry else ""
        raise ToolTransientError(
            f"Azure DevOps HTTP {status}: {_error_message(text)}{hint}",
            tool=tool_name,
            status=status,
        )
    if 300 <= status < 400:
        raise ToolFailed(
            f"Azure DevOps redirected (HTTP {status}); the PAT is probably invalid",
            tool=tool_name,
            status=status,
        )
    if status >= 400:
        raise ToolFailed(
            f"Azure DevOps HTTP {status}: {_error_message(text)}", tool=tool_name, status=status
        )
    if status == 204 or not text:
        return None
    if status == 203 or "json" not in headers.get("Content-Type", ""):
        raise ToolFailed(
            "Azure DevOps answered with a non-JSON page; the PAT is probably invalid",
            tool=tool_name,
            status=401,
        )
    try:
        return json.loads(text)
    except ValueError as exc:
        raise ToolTransientError("Azure DevOps answered invalid JSON", tool=tool_name) from exc
