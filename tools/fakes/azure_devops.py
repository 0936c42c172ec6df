"""In-memory stand-in for ``azure-devops``: work items, pipeline runs and builds in dicts.

Work items are built from the same JSON Patch documents the real adapter sends
(``create_patch`` / ``update_patch``), so field mapping cannot drift. ``list`` understands
a small WIQL subset (:func:`parse_wiql`): ``[Field] = 'v'``, ``<>``, ``CONTAINS``,
``@project``, joined with ``AND``, and ``ORDER BY [System.Id] ASC|DESC``.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

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
from tools.adapters.azure_devops import SERVER, create_patch, update_patch
from tools.errors import ToolFailed
from tools.spec import ToolServer, tool

_CONDITION = re.compile(
    r"^\[(?P<field>[\w.]+)\]\s*(?P<op>=|<>|CONTAINS)\s*(?:'(?P<value>[^']*)'|(?P<macro>@project))$",
    re.IGNORECASE,
)
_WIQL = re.compile(
    r"^SELECT\s+.+?\s+FROM\s+workitems(?:\s+WHERE\s+(?P<where>.+?))?"
    r"(?:\s+ORDER\s+BY\s+\[System\.Id\]\s*(?P<order>ASC|DESC)?)?\s*$",
    re.IGNORECASE | re.DOTALL,
)
_BASE = "https://dev.azure.com/fake"


@dataclass(frozen=True)
class WiqlQuery:
    """A parsed WIQL subset: ANDed conditions and an id ordering."""

    conditions: tuple[tuple[str, str, str | None], ...]
    descending: bool

    def matches(self, fields: dict[str, Any], project: str) -> bool:
        """Whether a work item's fields satisfy every condition."""
        for name, op, value in self.conditions:
            expected = (project if value is None else value).lower()
            actual = str(fields.get(name, "")).lower()
            if op == "CONTAINS" and expected not in actual:
                return False
            if op != "CONTAINS" and (actual == expected) != (op == "="):
                return False
        return True


def parse_wiql(query: str) -> WiqlQuery:
    """Parse the supported WIQL subset; ``ValueError`` names what it could not read."""
    match = _WIQL.match(query.strip())
    if match is None:
        raise ValueError("TF51006: The query statement is not valid.")
    conditions = []
    for part in re.split(r"\s+AND\s+", match["where"] or "", flags=re.IGNORECASE):
        if not part.strip():
            continue
        cond = _CONDITION.match(part.strip())
        if cond is None:
            raise ValueError(f"TF51006: cannot parse condition {part.strip()!r}.")
        value = None if cond["macro"] else cond["value"]
        conditions.append((cond["field"], cond["op"].upper(), value))
    return WiqlQuery(tuple(conditions), (match["order"] or "").upper() == "DESC")


class FakeAzureDevOpsServer(ToolServer):
    """Records work items (:attr:`work_items`) and pipeline runs (:attr:`builds`)."""

    name = SERVER

    def __init__(
        self,
        *,
        projects: Iterable[str] = ("Operations",),
        pipelines: dict[int, str] | None = None,
    ) -> None:
        self.projects = list(projects)
        self.pipelines = dict(pipelines) if pipelines is not None else {1: "deploy"}
        self.work_items: dict[int, WorkItem] = {}
        self.builds: dict[int, BuildStatus] = {}
        self.runs: list[RunPipelineArgs] = []
        self._ids = itertools.count(1)
        self._run_ids = itertools.count(100)

    def finish_build(self, build_id: int, result: str = "succeeded") -> None:
        """Complete a queued build with ``result``."""
        build = self.builds[build_id]
        self.builds[build_id] = build.model_copy(update={"status": "completed", "result": result})

    def _project(self, tool_name: str, project: str | None) -> None:
        if project is not None and project not in self.projects:
            raise ToolFailed(
                f"Azure DevOps HTTP 404: TF200016: The following project does not exist: "
                f"{project}.",
                tool=tool_name,
                status=404,
            )

    def _item(self, tool_name: str, number: int, project: str | None) -> WorkItem:
        item = self.work_items.get(number)
        if item is None or (project and item.fields.get("System.TeamProject") != project):
            raise ToolFailed(
                f"Azure DevOps HTTP 404: TF401232: Work item {number} does not exist.",
                tool=tool_name,
                status=404,
            )
        return item

    @tool()
    async def create_work_item(self, args: CreateWorkItemArgs) -> WorkItem:
        """Record a new work item."""
        self._project(f"{SERVER}.create_work_item", args.project)
        number = next(self._ids)
        fields: dict[str, Any] = {
            "System.Id": number,
            "System.TeamProject": args.project,
            "System.AreaPath": args.project,
            "System.IterationPath": args.project,
            "System.WorkItemType": args.work_item_type,
            "System.State": "New",
        }
        fields.update(
            {op["path"].removeprefix("/fields/"): op["value"] for op in create_patch(args)}
        )
        item = WorkItem(
            id=number,
            rev=1,
            url=f"{_BASE}/_apis/wit/workItems/{number}",
            fields=fields,
            web_url=f"{_BASE}/{args.project}/_workitems/edit/{number}",
        )
        self.work_items[number] = item
        return item

    @tool()
    async def manage_work_items(self, args: ManageWorkItemsArgs) -> ManageWorkItemsResult:
        """Get, update, delete or list (WIQL subset) recorded work items."""
        name = f"{SERVER}.manage_work_items"
        self._project(name, args.project)
        result = ManageWorkItemsResult(action=args.action)
        if args.action == "list":
            assert args.project is not None and args.query is not None
            try:
                query = parse_wiql(args.query)
            except ValueError as exc:
                raise ToolFailed(f"Azure DevOps HTTP 400: {exc}", tool=name, status=400) from exc
            hits = [
                item
                for item in self.work_items.values()
                if item.fields.get("System.TeamProject") == args.project
                and query.matches(item.fields, args.project)
            ]
            hits.sort(key=lambda item: item.id, reverse=query.descending)
            result.work_items = hits[: args.top]
            return result
        assert args.work_item_id is not None
        item = self._item(name, args.work_item_id, args.project)
        if args.action == "get":
            result.work_items = [item]
        elif args.action == "update":
            result.work_items = [self._update(name, item, args)]
        else:
            del self.work_items[item.id]
            result.deleted_id = item.id
        return result

    def _update(self, name: str, item: WorkItem, args: ManageWorkItemsArgs) -> WorkItem:
        fields = dict(item.fields)
        for op in update_patch(args.fields, args.expected_rev):
            if op["op"] == "test":
                if op["value"] != item.rev:
                    raise ToolFailed(
                        f"Azure DevOps HTTP 412: TF26071: work item changed; rev is {item.rev}.",
                        tool=name,
                        status=412,
                    )
            elif op["op"] == "remove":
                fields.pop(op["path"].removeprefix("/fields/"), None)
            else:
                fields[op["path"].removeprefix("/fields/")] = op["value"]
        updated = item.model_copy(update={"fields": fields, "rev": item.rev + 1})
        self.work_items[item.id] = updated
        return updated

    @tool(read_only=True)
    async def list_projects(self, args: ListProjectsArgs) -> ListProjectsResult:
        """List the configured projects, paged like the service."""
        start = int(args.continuation_token or 0)
        page = self.projects[start : start + args.top]
        more = start + args.top < len(self.projects)
        return ListProjectsResult(
            projects=[
                Project(id=f"fake-{i}", name=p, state="wellFormed")
                for i, p in enumerate(page, start)
            ],
            continuation_token=str(start + args.top) if more else None,
        )

    @tool()
    async def run_pipeline(self, args: RunPipelineArgs) -> PipelineRun:
        """Queue a run; its build starts ``inProgress``."""
        name = f"{SERVER}.run_pipeline"
        self._project(name, args.project)
        if args.pipeline_id not in self.pipelines:
            raise ToolFailed(
                f"Azure DevOps HTTP 404: Pipeline with id {args.pipeline_id} not found.",
                tool=name,
                status=404,
            )
        run_id = next(self._run_ids)
        self.runs.append(args)
        web_url = f"{_BASE}/{args.project}/_build/results?buildId={run_id}"
        self.builds[run_id] = BuildStatus(
            id=run_id,
            build_number=f"fake.{run_id}",
            status="inProgress",
            source_branch=args.ref_name,
            definition=self.pipelines[args.pipeline_id],
            web_url=web_url,
        )
        return PipelineRun(
            id=run_id,
            name=f"fake.{run_id}",
            pipeline_id=args.pipeline_id,
            state="inProgress",
            web_url=web_url,
        )

    @tool(read_only=True)
    async def get_build_status(self, args: GetBuildStatusArgs) -> BuildStatus:
        """The recorded build's status."""
        name = f"{SERVER}.get_build_status"
        self._project(name, args.project)
        build = self.builds.get(args.build_id)
        if build is None:
            raise ToolFailed(
                f"Azure DevOps HTTP 404: Build {args.build_id} does not exist.",
                tool=name,
                status=404,
            )
        return build
