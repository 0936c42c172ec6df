"""Records of flows (deployments, pipelines, sagas) as the deployment repository keeps
them: one summary per flow, rewritten as the flow moves on, and immutable journal
entries, one per version of the flow.

Every model is closed (``extra="forbid"``): a misspelt key is an error naming the field.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

FlowKind = Literal["deployment", "pipeline", "saga"]

# Flow ids are minted by codebus (uuids, ``dep-...``); they end up in object keys.
_FLOW_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


def _check_flow_id(value: str) -> str:
    if not _FLOW_ID.match(value):
        raise ValueError(
            "flow ids are 1-128 letters, digits, '.', '_' and '-', starting with a letter or digit"
        )
    return value


class FlowRecord(BaseModel):
    """The summary of one flow: what it is, where it stands, and why.

    ``rev`` is the flow's version: a summary never replaces one with a higher ``rev``.
    """

    model_config = ConfigDict(extra="forbid")

    id: str
    kind: FlowKind
    rev: int = Field(ge=0)
    name: str | None = Field(None, description="pipeline or saga name; None for deployments")
    app: str | None = None
    environment: str | None = None
    version: str | None = None
    strategy: str | None = None
    phase: str = Field(min_length=1)
    terminal: bool = False
    step: int | None = None
    step_name: str | None = None
    reason: str | None = None
    evidence: str | None = None
    created_at: float = Field(ge=0, description="epoch seconds")
    updated_at: float = Field(ge=0)
    detail: dict[str, Any] = Field(
        default_factory=dict, description="kind-specific: inputs, context, failed step, ..."
    )

    _id = field_validator("id")(_check_flow_id)

    @property
    def created(self) -> datetime:
        """``created_at`` as an aware UTC datetime."""
        return datetime.fromtimestamp(self.created_at, UTC)


class JournalRecord(BaseModel):
    """One immutable journal entry: the flow at version ``rev`` and the steps taken to
    reach it. Stored under a key that includes ``rev`` and never overwritten."""

    model_config = ConfigDict(extra="forbid")

    flow_id: str
    rev: int = Field(ge=0)
    at: float = Field(ge=0)
    phase: str = Field(min_length=1)
    step: int | None = None
    entries: list[dict[str, Any]] = Field(default_factory=list)

    _id = field_validator("flow_id")(_check_flow_id)


class RecordFilter(BaseModel):
    """What ``list`` selects: every given field must match; times are epoch seconds,
    ``since`` inclusive and ``until`` exclusive, on the flow's creation time."""

    model_config = ConfigDict(extra="forbid")

    kind: FlowKind | None = None
    app: str | None = Field(None, min_length=1)
    environment: str | None = Field(None, min_length=1)
    phase: str | None = Field(None, min_length=1)
    since: float | None = Field(None, ge=0)
    until: float | None = Field(None, ge=0)
    limit: int = Field(100, ge=1, le=10_000)

    @model_validator(mode="after")
    def _ordered_range(self) -> RecordFilter:
        if self.since is not None and self.until is not None and self.until <= self.since:
            raise ValueError("until must be later than since")
        return self

    def matches(self, record: FlowRecord) -> bool:
        """Whether ``record`` passes every given condition."""
        checks = (
            (self.kind, record.kind),
            (self.app, record.app),
            (self.environment, record.environment),
            (self.phase, record.phase),
        )
        if any(want is not None and want != got for want, got in checks):
            return False
        if self.since is not None and record.created_at < self.since:
            return False
        return self.until is None or record.created_at < self.until


# ---- pipeline and saga specs (YAML) ----------------------------------------------------

_STEP_NAME = r"^[a-z][a-z0-9_-]{0,62}$"
_TOOL_NAME = r"^[a-z][a-z0-9-]*\.[a-z][a-z0-9_]*$"
#: ``${name}`` or ``${name.field.sub}``: a value from the flow's context.
TEMPLATE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)((?:\.[A-Za-z0-9_-]+)*)\}")


class _SpecModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RetrySpec(_SpecModel):
    """How often a step is tried, and the wait before each retry (doubling, capped)."""

    attempts: int = Field(1, ge=1, le=20, description="tries in total, the first included")
    backoff: float = Field(1.0, ge=0, le=3600, description="seconds before the first retry")
    max_backoff: float = Field(60.0, ge=0, le=3600)

    def delay(self, attempt: int) -> float:
        """Seconds to wait before try ``attempt + 1`` after try ``attempt`` failed."""
        return float(min(self.max_backoff, self.backoff * 2 ** (attempt - 1)))


class FailIf(_SpecModel):
    """Fail the step when ``condition`` holds for the number at ``field`` of the result
    (the analysis condition language: ``result > 0``)."""

    field: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_]+(\.[A-Za-z0-9_]+)*$")
    condition: str = Field(min_length=1, max_length=500)

    @field_validator("condition")
    @classmethod
    def _parses(cls, value: str) -> str:
        from schemas.expressions import parse_condition

        parse_condition(value)  # ConditionSyntaxError (a ValueError) names the problem
        return value


class ToolCallSpec(_SpecModel):
    """A tool call; string values may hold ``${...}`` templates over the context."""

    tool: str = Field(pattern=_TOOL_NAME, description="server.tool, e.g. kubernetes.kubectl_apply")
    args: dict[str, Any] = Field(default_factory=dict)
    timeout: float = Field(300.0, gt=0, le=24 * 3600, description="seconds per try")
    retry: RetrySpec = RetrySpec()


class StepSpec(ToolCallSpec):
    """One step: a tool call - or ``deploy``, a sub-flow: a ``deployment.requested``
    (rolling, blue-green or canary on the flow engine) whose outcome ends the step -
    what of its result goes into the context (``outputs``: context key -> result field
    path), an optional failure condition, and for sagas the compensation that undoes it."""

    name: str = Field(pattern=_STEP_NAME)
    tool: str | None = Field(  # type: ignore[assignment]
        None, pattern=_TOOL_NAME, description="server.tool; or give deploy"
    )
    deploy: dict[str, Any] | None = Field(
        None, description="deployment.requested payload (templated); the step waits for it"
    )
    action: str | None = Field(
        None,
        pattern=_TOOL_NAME,
        description="a built-in action of the unit that runs the pipeline (the deploy "
        "facade's deploy.validate, deploy.build, ...); args are its templated arguments",
    )
    outputs: dict[str, str] = Field(default_factory=dict)
    fail_if: FailIf | None = None
    compensate: ToolCallSpec | None = None

    @model_validator(mode="after")
    def _tool_or_deploy(self) -> StepSpec:
        given = [k for k in ("tool", "deploy", "action") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(f"step {self.name!r}: give exactly one of tool, deploy and action")
        if self.deploy is not None and self.args:
            raise ValueError(f"step {self.name!r}: args belong to tool steps; use deploy")
        return self


class WorkflowSpec(_SpecModel):
    """A pipeline or a saga as declared in YAML."""

    kind: Literal["pipeline", "saga"]
    name: str = Field(pattern=_STEP_NAME)
    description: str = ""
    inputs: tuple[str, ...] = Field(default=(), description="keys the run's data must have")
    steps: tuple[StepSpec, ...] = Field(min_length=1, max_length=100)

    @model_validator(mode="after")
    def _consistent(self) -> WorkflowSpec:
        known = set(self.inputs)
        seen: set[str] = set()
        for i, step in enumerate(self.steps):
            where = f"steps.{i}"
            if step.name in seen:
                raise ValueError(f"{where}.name: {step.name!r} is used by an earlier step")
            seen.add(step.name)
            if step.compensate is not None and self.kind == "pipeline":
                raise ValueError(f"{where}.compensate: pipelines do not compensate; use kind saga")
            _check_refs(step.args, known, f"{where}.args")
            _check_refs(step.deploy or {}, known, f"{where}.deploy")
            known |= set(step.outputs)
            if step.compensate is not None:
                _check_refs(step.compensate.args, known, f"{where}.compensate.args")
        return self


def _check_refs(value: Any, known: set[str], where: str) -> None:
    if isinstance(value, str):
        for match in TEMPLATE.finditer(value):
            if match.group(1) not in known:
                raise ValueError(
                    f"{where}: ${{{match.group(1)}}} is neither an input nor an output of an "
                    f"earlier step (known: {', '.join(sorted(known)) or 'none'})"
                )
    elif isinstance(value, dict):
        for key, item in value.items():
            _check_refs(item, known, f"{where}.{key}")
    elif isinstance(value, list):
        for n, item in enumerate(value):
            _check_refs(item, known, f"{where}.{n}")


# ---- durable state of one run ----------------------------------------------------------

WorkflowPhase = Literal[
    "running",
    "compensating",
    "succeeded",
    "failed",  # a pipeline step failed (report in failed_step), or a saga with nothing to undo
    "compensated",  # a saga step failed and every compensation ran
    "compensation_failed",  # a compensation failed after its retries: a person must look
]
WORKFLOW_TERMINAL: frozenset[str] = frozenset(
    {"succeeded", "failed", "compensated", "compensation_failed"}
)


class Compensation(BaseModel):
    """The undo of one completed saga step, with its arguments rendered when the step
    completed (recorded before the next step starts)."""

    model_config = ConfigDict(extra="forbid")

    step: str
    index: int
    tool: str
    args: dict[str, Any]
    timeout: float
    retry: RetrySpec
    status: Literal["pending", "done", "failed"] = "pending"
    attempts: int = 0
    error: str | None = None


class WorkflowState(BaseModel):
    """One run of a pipeline or saga; stored by compare-and-set on ``rev``.

    ``cursor`` says what runs next: ``(mode, index, attempt)`` - a forward step or a
    compensation (index into ``compensations``, which is in reverse order of the steps).
    """

    model_config = ConfigDict(extra="forbid")

    id: str
    rev: int = 0
    spec: WorkflowSpec
    inputs: dict[str, Any] = Field(default_factory=dict)
    context: dict[str, Any] = Field(default_factory=dict)
    phase: WorkflowPhase = "running"
    mode: Literal["forward", "compensate"] = "forward"
    index: int = 0
    attempt: int = 1
    inflight: bool = False
    waiting: str | None = Field(None, description="the deployment flow a deploy step awaits")
    cause: str | None = Field(
        None, description="the event whose delivery ended a waiting step in this rev"
    )
    queue: str | None = Field(
        None,
        description="the subscription whose queue runs this run's steps "
        "(None: the workflows unit's; the deploy facade's runs in the deploy unit)",
    )
    due: float | None = None
    compensations: list[Compensation] = Field(default_factory=list)
    failed_step: dict[str, Any] | None = None
    journal: list[dict[str, Any]] = Field(default_factory=list)
    requested_by: str | None = None
    created_at: float = 0.0
    updated_at: float = 0.0
    sent: list[dict[str, Any]] = Field(
        default_factory=list,
        description="messages of the transition that produced this rev; re-sent (same ids) "
        "when a stale or redelivered message finds the run moved on",
    )
    outbox: list[dict[str, Any]] = Field(
        default_factory=list, description="always empty: the flow store reads it"
    )

    @property
    def terminal(self) -> bool:
        """True once the run can no longer change by itself."""
        return self.phase in WORKFLOW_TERMINAL

    def next_due(self) -> float | None:
        """When the pending step or compensation is due (None once terminal)."""
        return None if self.terminal else (self.due if self.due is not None else self.updated_at)


# ---- events ----------------------------------------------------------------------------
# Registered in schemas.events.EVENT_TYPES by the hook at the end of this module.

from schemas.events import EVENT_TYPES, Payload  # noqa: E402

_ID = Field(min_length=1, max_length=128)


class WorkflowRunRequested(Payload):
    """Start a pipeline or saga: the spec (validated again) and the run's inputs."""

    spec: dict[str, Any]
    data: dict[str, Any] = Field(default_factory=dict)
    requested_by: str | None = Field(None, max_length=200)


class WorkflowStepDue(Payload):
    """Internal: run the cursor ``(mode, index, attempt)`` of a run (sent, not published)."""

    flow_id: str = _ID
    mode: Literal["forward", "compensate"]
    index: int = Field(ge=0)
    attempt: int = Field(ge=1)


class WorkflowsSweep(Payload):
    """Internal: time to re-send the step of runs that have waited far too long."""

    slot: int = Field(ge=0)


class WorkflowStarted(Payload):
    """A run started."""

    flow_id: str = _ID
    kind: Literal["pipeline", "saga"]
    name: str
    steps: list[str]


class WorkflowStepCompleted(Payload):
    """A forward step finished; ``outputs`` went into the context."""

    flow_id: str = _ID
    name: str
    step: str
    index: int
    attempts: int
    outputs: dict[str, Any] = Field(default_factory=dict)


class WorkflowCompleted(Payload):
    """Every step succeeded."""

    flow_id: str = _ID
    kind: Literal["pipeline", "saga"]
    name: str
    context: dict[str, Any] = Field(default_factory=dict)


class WorkflowFailed(Payload):
    """The failed-step report: which step, its error, the context at that point, and
    (sagas) the phase the run ended in after compensating."""

    flow_id: str = _ID
    kind: Literal["pipeline", "saga"]
    name: str
    failed_step: str
    index: int
    attempts: int
    error: str
    context: dict[str, Any] = Field(default_factory=dict)


class SagaCompensationCompleted(Payload):
    """One compensation ran."""

    flow_id: str = _ID
    name: str
    step: str
    tool: str
    attempts: int


class SagaCompensationFailed(Payload):
    """A compensation failed after its retries; the others still run."""

    flow_id: str = _ID
    name: str
    step: str
    tool: str
    attempts: int
    error: str


class SagaFinished(Payload):
    """A saga that failed has finished compensating: ``phase`` is ``compensated`` or
    ``compensation_failed`` (a person must fix the cause, then ``flows compensate``)."""

    flow_id: str = _ID
    name: str
    phase: Literal["compensated", "compensation_failed"]
    failed: list[str] = Field(default_factory=list, description="steps whose undo failed")


class SagaCompensateRequested(Payload):
    """Re-run the failed compensations of a saga in ``compensation_failed``."""

    flow_id: str = _ID
    by: str | None = Field(None, max_length=200)


class WorkflowCommandRejected(Payload):
    """A command that does not apply to the run as it stands, and why."""

    flow_id: str = _ID
    command: str
    why: str


WORKFLOW_EVENT_TYPES: dict[str, type[Payload]] = {
    "workflow.run_requested": WorkflowRunRequested,
    "workflow.step_due": WorkflowStepDue,
    "workflow.sweep": WorkflowsSweep,
    "workflow.started": WorkflowStarted,
    "workflow.step_completed": WorkflowStepCompleted,
    "workflow.completed": WorkflowCompleted,
    "workflow.failed": WorkflowFailed,
    "workflow.command_rejected": WorkflowCommandRejected,
    "saga.compensation_completed": SagaCompensationCompleted,
    "saga.compensation_failed": SagaCompensationFailed,
    "saga.finished": SagaFinished,
    "saga.compensate_requested": SagaCompensateRequested,
}

EVENT_TYPES.update(WORKFLOW_EVENT_TYPES)
