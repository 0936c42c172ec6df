"""Argument and result models of the ``azure-devops`` tool server.

``create_work_item`` takes the integration guide's arguments (``project``,
``work_item_type``, ``title``, ``description``) plus optional common fields and a raw
``fields`` map of reference names (``Microsoft.VSTS.Common.Priority``) to values.
``manage_work_items`` is one tool with an ``action``; the fields each action needs are
checked here, and a missing one is reported under its own name.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
)

# Field reference names: "System.Title", "Microsoft.VSTS.Common.Priority", "Custom.Team".
_FIELD_REF = re.compile(r"^[A-Za-z][A-Za-z0-9_]*(\.[A-Za-z0-9_]+)+$")
# Azure DevOps project names may not contain these characters (nor start with '_' or '.').
_PROJECT_FORBIDDEN = set('\\/:*?"<>|;#$%&+,=@[]{}')


class _Args(BaseModel):
    """Base of the argument models: unknown fields are an error."""

    model_config = ConfigDict(extra="forbid")


def _check_project(value: str) -> str:
    if not value or len(value) > 64 or value[0] in "_." or _PROJECT_FORBIDDEN & set(value):
        raise ValueError("not a valid Azure DevOps project name")
    return value


def _check_field_refs(value: dict[str, Any]) -> dict[str, Any]:
    for name in value:
        if not _FIELD_REF.match(name):
            raise ValueError(f"{name!r} is not a field reference name such as 'System.Title'")
    return value


ProjectName = Annotated[str, AfterValidator(_check_project)]
FieldMap = Annotated[dict[str, Any], AfterValidator(_check_field_refs)]


class CreateWorkItemArgs(_Args):
    """Create a work item (Task, Bug, User Story, ...) in ``project``."""

    project: ProjectName
    work_item_type: str = Field(min_length=1, max_length=128, pattern=r"^[\w][\w .-]*$")
    title: str = Field(min_length=1, max_length=255)
    description: str = Field(default="", description="HTML allowed, as in the web UI.")
    assigned_to: str | None = Field(default=None, min_length=1)
    area_path: str | None = Field(default=None, min_length=1)
    iteration_path: str | None = Field(default=None, min_length=1)
    tags: list[Annotated[str, Field(min_length=1, pattern=r"^[^;]+$")]] = Field(
        default_factory=list
    )
    priority: int | None = Field(default=None, ge=1, le=4)
    fields: FieldMap = Field(
        default_factory=dict, description="Extra fields by reference name; they win on clashes."
    )


class WorkItem(BaseModel):
    """A work item as Azure DevOps returns it."""

    id: int
    rev: int
    url: str
    fields: dict[str, Any] = Field(default_factory=dict)
    web_url: str | None = None

    @property
    def title(self) -> str | None:
        """``System.Title``, the field everyone asks for."""
        return self.fields.get("System.Title")


class ManageWorkItemsArgs(_Args):
    """Get, update, list (by WIQL) or delete work items."""

    action: Literal["get", "update", "list", "delete"]
    project: ProjectName | None = Field(
        default=None,
        validate_default=True,
        description="Required for list (the WIQL is scoped to it).",
    )
    work_item_id: int | None = Field(default=None, ge=1, validate_default=True)
    fields: FieldMap = Field(
        default_factory=dict,
        validate_default=True,
        description="For update: reference name -> new value; None removes the field.",
    )
    expected_rev: int | None = Field(
        default=None, ge=1, description="For update: fail if the item changed since this rev."
    )
    query: str | None = Field(default=None, min_length=1, validate_default=True)
    top: int = Field(default=200, ge=1, le=20_000)
    destroy: bool = Field(default=False, description="For delete: skip the recycle bin.")

    # These run after ``action`` and ``project`` are validated, and report the missing
    # field under its own name rather than as a model-level error.
    @field_validator("project")
    @classmethod
    def _project_when_listing(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None and info.data.get("action") == "list":
            raise ValueError("required for action 'list'")
        return value

    @field_validator("work_item_id")
    @classmethod
    def _id_when_needed(cls, value: int | None, info: ValidationInfo) -> int | None:
        if value is None and info.data.get("action") in {"get", "update", "delete"}:
            raise ValueError(f"required for action {info.data['action']!r}")
        return value

    @field_validator("fields")
    @classmethod
    def _fields_when_updating(cls, value: dict[str, Any], info: ValidationInfo) -> dict[str, Any]:
        if not value and info.data.get("action") == "update":
            raise ValueError("update needs at least one field")
        return value

    @field_validator("query")
    @classmethod
    def _query_when_listing(cls, value: str | None, info: ValidationInfo) -> str | None:
        if info.data.get("action") != "list":
            return value
        if value is None:
            raise ValueError("required for action 'list' (a WIQL query)")
        if not value.lstrip().upper().startswith("SELECT"):
            raise ValueError("must be a WIQL SELECT statement")
        return value


class ManageWorkItemsResult(BaseModel):
    """Items fetched, updated or listed; ``deleted_id`` for a delete."""

    action: str
    work_items: list[WorkItem] = Field(default_factory=list)
    deleted_id: int | None = None


class ListProjectsArgs(_Args):
    """List the organization's projects."""

    top: int = Field(default=100, ge=1, le=1000)
    continuation_token: str | None = Field(default=None, min_length=1)


class Project(BaseModel):
    """One team project."""

    id: str
    name: str
    state: str | None = None
    description: str | None = None
    visibility: str | None = None
    url: str | None = None


class ListProjectsResult(BaseModel):
    """Projects, and a token when more remain."""

    projects: list[Project] = Field(default_factory=list)
    continuation_token: str | None = None


class RunPipelineArgs(_Args):
    """Queue a run of pipeline ``pipeline_id`` on ``branch``."""

    project: ProjectName
    pipeline_id: int = Field(ge=1)
    branch: str = Field(default="main", min_length=1, description="Name or refs/... ref.")
    variables: dict[str, str] = Field(default_factory=dict)
    template_parameters: dict[str, str] = Field(default_factory=dict)

    @field_validator("variables")
    @classmethod
    def _variable_names(cls, value: dict[str, str]) -> dict[str, str]:
        for name in value:
            if not re.match(r"^[A-Za-z_][\w.-]*$", name):
                raise ValueError(f"{name!r} is not a valid pipeline variable name")
        return value

    @property
    def ref_name(self) -> str:
        """The full git ref: ``main`` becomes ``refs/heads/main``."""
        return self.branch if self.branch.startswith("refs/") else f"refs/heads/{self.branch}"


class PipelineRun(BaseModel):
    """A queued or finished pipeline run."""

    id: int
    name: str | None = None
    pipeline_id: int
    state: str
    result: str | None = None
    url: str | None = None
    web_url: str | None = None


class GetBuildStatusArgs(_Args):
    """Read one build's status."""

    project: ProjectName
    build_id: int = Field(ge=1)


class BuildStatus(BaseModel):
    """A build's status (``notStarted``, ``inProgress``, ``completed``) and result."""

    id: int
    build_number: str | None = None
    status: str
    result: str | None = None
    source_branch: str | None = None
    definition: str | None = None
    queue_time: str | None = None
    start_time: str | None = None
    finish_time: str | None = None
    web_url: str | None = None
