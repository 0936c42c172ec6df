"""The ``azure-devops`` adapter against a local Azure DevOps stand-in over real HTTP.

``test_same_behaviour_on_real_and_fake`` runs one scenario against both the real
adapter and :class:`FakeAzureDevOpsServer`, so the fake cannot drift.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from pydantic import BaseModel, SecretStr, ValidationError

from schemas.tools.azure_devops import (
    CreateWorkItemArgs,
    GetBuildStatusArgs,
    ListProjectsArgs,
    ManageWorkItemsArgs,
    RunPipelineArgs,
)
from tests.helpers import silent_server
from tests.tools.adapters.ado_server import AdoStub, start_ado_stub
from tools.adapters.azure_devops import AzureDevOpsConfig, AzureDevOpsServer
from tools.errors import ToolFailed, ToolTimeout, ToolTransientError
from tools.fakes.azure_devops import FakeAzureDevOpsServer
from tools.spec import ToolServer

PAT = "pat-secret-0123456789"


@pytest.fixture
async def ado() -> AsyncIterator[tuple[AdoStub, AzureDevOpsServer]]:
    """The stand-in and an adapter pointed at its organization."""
    stub = AdoStub(pat=PAT)
    http = await start_ado_stub(stub)
    server = _server(f"{stub.base}/org")
    try:
        yield stub, server
    finally:
        await server.close()
        await http.close()


def _server(org_url: str, pat: str = PAT) -> AzureDevOpsServer:
    config = AzureDevOpsConfig(
        organization_url=org_url, personal_access_token=SecretStr(pat), timeout=5
    )
    return AzureDevOpsServer(config)


async def _call(server: ToolServer, name: str, args: BaseModel) -> Any:
    bound = {t.spec.name: t for t in server.tools()}[f"azure-devops.{name}"]
    return await bound.call(args)


def test_tool_names_and_read_only_flags() -> None:
    server = _server("https://dev.azure.com/org")
    specs = {t.spec.name: t.spec for t in server.tools()}
    assert set(specs) == {
        "azure-devops.create_work_item",
        "azure-devops.manage_work_items",
        "azure-devops.list_projects",
        "azure-devops.run_pipeline",
        "azure-devops.get_build_status",
    }
    assert {n for n, s in specs.items() if s.read_only} == {
        "azure-devops.list_projects",
        "azure-devops.get_build_status",
    }


async def test_create_work_item_sends_json_patch(
    ado: tuple[AdoStub, AzureDevOpsServer],
) -> None:
    stub, server = ado
    item = await _call(
        server,
        "create_work_item",
        CreateWorkItemArgs(
            project="Operations",
            work_item_type="User Story",
            title="Post-deployment validation for myapp",
            description="Validate deployment of myapp v1.2.3",
            tags=["deploy", "myapp"],
            priority=2,
            fields={"Custom.Team": "sre"},
        ),
    )
    assert item.id == 1 and item.rev == 1
    assert item.title == "Post-deployment validation for myapp"
    assert item.fields["System.WorkItemType"] == "User Story"
    assert item.fields["System.Tags"] == "deploy; myapp"
    assert item.fields["Microsoft.VSTS.Common.Priority"] == 2
    assert item.fields["Custom.Team"] == "sre"
    assert item.web_url and item.web_url.endswith("/org/Operations/_workitems/edit/1")

    [request] = stub.requests
    assert request["method"] == "POST"
    assert request["path"] == "/org/Operations/_apis/wit/workitems/$User Story"
    assert request["query"]["api-version"] == "7.1"
    assert request["content_type"] == "application/json-patch+json"
    assert {"op": "add", "path": "/fields/System.Title", "value": item.title} in request["body"]
    assert all(op["op"] == "add" for op in request["body"])


async def test_get_update_and_delete(ado: tuple[AdoStub, AzureDevOpsServer]) -> None:
    stub, server = ado
    created = await _call(
        server,
        "create_work_item",
        CreateWorkItemArgs(project="Operations", work_item_type="Task", title="t", description="d"),
    )
    updated = await _call(
        server,
        "manage_work_items",
        ManageWorkItemsArgs(
            action="update",
            project="Operations",
            work_item_id=created.id,
            fields={"System.State": "Active", "System.Description": None},
            expected_rev=1,
        ),
    )
    [item] = updated.work_items
    assert item.rev == 2
    assert item.fields["System.State"] == "Active"
    assert "System.Description" not in item.fields
    assert stub.requests[-1]["body"][0] == {"op": "test", "path": "/rev", "value": 1}

    # A stale rev is rejected by the service: optimistic concurrency works end to end.
    with pytest.raises(ToolFailed) as stale:
        await _call(
            server,
            "manage_work_items",
            ManageWorkItemsArgs(
                action="update",
                work_item_id=created.id,
                fields={"System.Title": "x"},
                expected_rev=1,
            ),
        )
    assert stale.value.status == 412

    got = await _call(
        server, "manage_work_items", ManageWorkItemsArgs(action="get", work_item_id=created.id)
    )
    assert got.work_items[0].fields["System.State"] == "Active"

    deleted = await _call(
        server,
        "manage_work_items",
        ManageWorkItemsArgs(action="delete", project="Operations", work_item_id=created.id),
    )
    assert deleted.deleted_id == created.id
    with pytest.raises(ToolFailed) as missing:
        await _call(
            server, "manage_work_items", ManageWorkItemsArgs(action="get", work_item_id=created.id)
        )
    assert missing.value.status == 404
    assert "TF401232" in str(missing.value)


async def test_list_by_wiql_fetches_matching_items(
    ado: tuple[AdoStub, AzureDevOpsServer],
) -> None:
    stub, server = ado
    for title, wtype, project in [
        ("fix login", "Bug", "Operations"),
        ("write docs", "Task", "Operations"),
        ("fix logout", "Bug", "Operations"),
        ("fix elsewhere", "Bug", "Platform"),
    ]:
        await _call(
            server,
            "create_work_item",
            CreateWorkItemArgs(project=project, work_item_type=wtype, title=title),
        )
    query = (
        "SELECT [System.Id] FROM workitems WHERE [System.TeamProject] = @project "
        "AND [System.WorkItemType] = 'Bug' AND [System.Title] CONTAINS 'fix' "
        "ORDER BY [System.Id] DESC"
    )
    listed = await _call(
        server,
        "manage_work_items",
        ManageWorkItemsArgs(action="list", project="Operations", query=query),
    )
    assert [i.title for i in listed.work_items] == ["fix logout", "fix login"]
    batch = stub.requests[-1]
    assert batch["method"] == "GET" and batch["query"]["ids"] == "3,1"

    with pytest.raises(ToolFailed) as bad:
        await _call(
            server,
            "manage_work_items",
            ManageWorkItemsArgs(action="list", project="Operations", query="SELECT nonsense WHERE"),
        )
    assert bad.value.status == 400 and "TF51006" in str(bad.value)


async def test_list_projects_follows_continuation(
    ado: tuple[AdoStub, AzureDevOpsServer],
) -> None:
    _, server = ado
    first = await _call(server, "list_projects", ListProjectsArgs(top=2))
    assert [p.name for p in first.projects] == ["Operations", "Platform"]
    assert first.continuation_token
    rest = await _call(
        server,
        "list_projects",
        ListProjectsArgs(top=2, continuation_token=first.continuation_token),
    )
    assert [p.name for p in rest.projects] == ["Web"] and rest.continuation_token is None


async def test_run_pipeline_then_build_status(ado: tuple[AdoStub, AzureDevOpsServer]) -> None:
    stub, server = ado
    run = await _call(
        server,
        "run_pipeline",
        RunPipelineArgs(
            project="Platform", pipeline_id=7, branch="release/1.2", variables={"ENV": "prod"}
        ),
    )
    assert run.pipeline_id == 7 and run.state == "inProgress" and run.web_url
    body = stub.requests[-1]["body"]
    assert body["resources"]["repositories"]["self"]["refName"] == "refs/heads/release/1.2"
    assert body["variables"] == {"ENV": {"value": "prod", "isSecret": False}}

    status = await _call(
        server, "get_build_status", GetBuildStatusArgs(project="Platform", build_id=run.id)
    )
    assert (status.status, status.result) == ("inProgress", None)
    assert status.source_branch == "refs/heads/release/1.2" and status.definition == "deploy"

    stub.finish_build(run.id, "succeeded")
    done = await _call(
        server, "get_build_status", GetBuildStatusArgs(project="Platform", build_id=run.id)
    )
    assert (done.status, done.result) == ("completed", "succeeded")

    with pytest.raises(ToolFailed) as unknown:
        await _call(server, "run_pipeline", RunPipelineArgs(project="Platform", pipeline_id=99))
    assert unknown.value.status == 404


async def test_error_mapping(ado: tuple[AdoStub, AzureDevOpsServer]) -> None:
    stub, server = ado
    args = GetBuildStatusArgs(project="Platform", build_id=1)
    for status, kind in [(503, ToolTransientError), (429, ToolTransientError), (403, ToolFailed)]:
        stub.fail_next(status, f"canned {status}", {"Retry-After": "3"} if status == 429 else None)
        with pytest.raises(kind) as info:
            await _call(server, "get_build_status", args)
        assert info.value.status == status  # type: ignore[attr-defined]
        assert f"canned {status}" in str(info.value)

    with pytest.raises(ToolFailed) as missing_project:
        await _call(server, "get_build_status", GetBuildStatusArgs(project="Nope", build_id=1))
    assert missing_project.value.status == 404 and "TF200016" in str(missing_project.value)


async def test_bad_pat_is_a_permanent_failure_without_the_pat(
    ado: tuple[AdoStub, AzureDevOpsServer],
) -> None:
    stub, _ = ado
    wrong = _server(f"{stub.base}/org", pat="wrong-pat-value")
    try:
        with pytest.raises(ToolFailed) as info:
            await _call(wrong, "list_projects", ListProjectsArgs())
        assert info.value.status == 401 and "wrong-pat-value" not in str(info.value)
        # The sign-in page trap: 203 + HTML is reported as an auth failure too.
        stub.signin_page_for_bad_pat = True
        with pytest.raises(ToolFailed) as page:
            await _call(wrong, "list_projects", ListProjectsArgs())
        assert page.value.status == 401 and "PAT" in str(page.value)
    finally:
        await wrong.close()


async def test_unreachable_service_is_transient() -> None:
    server = _server("http://127.0.0.1:9/org")
    try:
        with pytest.raises(ToolTransientError):
            await _call(server, "list_projects", ListProjectsArgs())
    finally:
        await server.close()


@pytest.mark.parametrize(
    ("values", "field"),
    [
        ({"action": "get"}, "work_item_id"),
        ({"action": "update", "work_item_id": 1}, "fields"),
        ({"action": "list", "query": "SELECT [System.Id] FROM workitems"}, "project"),
        ({"action": "list", "project": "P"}, "query"),
        ({"action": "list", "project": "P", "query": "DROP TABLE"}, "query"),
        ({"action": "update", "work_item_id": 1, "fields": {"Title": "x"}}, "fields"),
        ({"action": "archive"}, "action"),
    ],
)
def test_bad_manage_args_name_the_field(values: dict[str, Any], field: str) -> None:
    with pytest.raises(ValidationError) as info:
        ManageWorkItemsArgs.model_validate(values)
    assert field in {str(err["loc"][0]) for err in info.value.errors()}


@pytest.mark.parametrize(
    ("values", "field"),
    [
        ({"title": ""}, "title"),
        ({"priority": 9}, "priority"),
        ({"project": "bad/project"}, "project"),
        ({"tags": ["a;b"]}, "tags"),
        ({"fields": {"not a ref": 1}}, "fields"),
    ],
)
def test_bad_create_args_name_the_field(values: dict[str, Any], field: str) -> None:
    base = {"project": "Operations", "work_item_type": "Task", "title": "t"}
    with pytest.raises(ValidationError) as info:
        CreateWorkItemArgs.model_validate({**base, **values})
    assert field in {str(err["loc"][0]) for err in info.value.errors()}


def test_config_hides_the_pat() -> None:
    config = AzureDevOpsConfig(
        organization_url="https://dev.azure.com/org/", personal_access_token=SecretStr(PAT)
    )
    assert config.organization_url == "https://dev.azure.com/org"
    assert PAT not in repr(config) and PAT not in config.model_dump_json()


@pytest.fixture(params=["http", "fake"])
async def backend(
    request: pytest.FixtureRequest,
) -> AsyncIterator[tuple[ToolServer, Callable[[int, str], None]]]:
    """The real adapter on the stand-in, or the fake, with the same projects and pipelines."""
    if request.param == "fake":
        fake = FakeAzureDevOpsServer(
            projects=["Operations", "Platform", "Web"], pipelines={7: "deploy", 8: "ci"}
        )
        yield fake, fake.finish_build
        return
    stub = AdoStub(pat=PAT)
    http = await start_ado_stub(stub)
    server = _server(f"{stub.base}/org")
    try:
        yield server, stub.finish_build
    finally:
        await server.close()
        await http.close()


async def test_same_behaviour_on_real_and_fake(
    backend: tuple[ToolServer, Callable[[int, str], None]],
) -> None:
    server, finish_build = backend
    a = await _call(
        server,
        "create_work_item",
        CreateWorkItemArgs(
            project="Web", work_item_type="Bug", title="fix a", assigned_to="ops@example.com"
        ),
    )
    b = await _call(
        server,
        "create_work_item",
        CreateWorkItemArgs(project="Web", work_item_type="Task", title="b"),
    )
    assert a.fields["System.AssignedTo"] == "ops@example.com"
    assert a.fields["System.State"] == "New" and b.id != a.id

    update = ManageWorkItemsArgs(
        action="update", work_item_id=a.id, fields={"System.State": "Resolved"}, expected_rev=1
    )
    assert (await _call(server, "manage_work_items", update)).work_items[0].rev == 2
    with pytest.raises(ToolFailed) as stale:
        await _call(server, "manage_work_items", update)
    assert stale.value.status == 412

    query = "SELECT [System.Id] FROM workitems WHERE [System.State] <> 'Resolved'"
    listed = await _call(
        server, "manage_work_items", ManageWorkItemsArgs(action="list", project="Web", query=query)
    )
    assert [i.id for i in listed.work_items] == [b.id]

    await _call(
        server, "manage_work_items", ManageWorkItemsArgs(action="delete", work_item_id=b.id)
    )
    with pytest.raises(ToolFailed) as gone:
        await _call(
            server, "manage_work_items", ManageWorkItemsArgs(action="get", work_item_id=b.id)
        )
    assert gone.value.status == 404

    run = await _call(server, "run_pipeline", RunPipelineArgs(project="Web", pipeline_id=8))
    status = await _call(
        server, "get_build_status", GetBuildStatusArgs(project="Web", build_id=run.id)
    )
    assert (status.status, status.source_branch) == ("inProgress", "refs/heads/main")
    finish_build(run.id, "failed")
    status = await _call(
        server, "get_build_status", GetBuildStatusArgs(project="Web", build_id=run.id)
    )
    assert (status.status, status.result) == ("completed", "failed")

    with pytest.raises(ToolFailed) as no_project:
        await _call(
            server,
            "create_work_item",
            CreateWorkItemArgs(project="Nope", work_item_type="Task", title="t"),
        )
    assert no_project.value.status == 404

    projects = await _call(server, "list_projects", ListProjectsArgs(top=2))
    assert len(projects.projects) == 2 and projects.continuation_token


async def test_hung_service_is_a_timeout() -> None:
    async with silent_server() as endpoint:
        server = AzureDevOpsServer(
            AzureDevOpsConfig(
                organization_url=f"{endpoint}/org",
                personal_access_token=SecretStr(PAT),
                timeout=0.5,
            )
        )
        try:
            with pytest.raises(ToolTimeout):
                await _call(server, "list_projects", ListProjectsArgs())
        finally:
            await server.close()
