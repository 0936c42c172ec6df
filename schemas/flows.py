"""Models of progressive-delivery flows: strategy specs (from ``CODEBUS_FLOWS_CONFIG`` and
per-request overrides), the deployment policy, and the durable state of one flow.

Every model is closed (``extra="forbid"``): a misspelt key is an error naming the field.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from schemas.analysis import AnalysisTemplate

Phase = Literal[
    "pending",  # waiting for image scans
    "progressing",
    "paused",
    "awaiting_approval",
    "promoting",
    "aborting",  # compensations running (scale canary down, switch back, undo)
    "succeeded",
    "aborted",
    "rolled_back",
    "failed",
]
TERMINAL_PHASES: frozenset[str] = frozenset({"succeeded", "aborted", "rolled_back", "failed"})
ApprovalTimeoutAction = Literal["abort", "promote", "stay_paused"]


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SetWeight(_Spec):
    """Canary step: give the canary ``set_weight`` % of the ready pods (replica share)."""

    set_weight: int = Field(ge=0, le=100)


class Pause(_Spec):
    """Canary step: wait ``pause`` seconds, or until promoted when ``pause`` is null."""

    pause: float | None = Field(ge=0)


class AnalysisRef(_Spec):
    """Run the analysis template ``template`` (from ``analysis_templates``) with ``args``.
    Inconclusive asks for approval (``approval_timeout``, then ``approval_timeout_action``)."""

    template: str = Field(min_length=1)
    args: dict[str, str] = Field(default_factory=dict)
    approval_timeout: float | None = Field(None, gt=0)
    approval_timeout_action: ApprovalTimeoutAction = "abort"


class AnalysisStep(_Spec):
    """Canary step: measure and judge; failed or error aborts, inconclusive pauses."""

    analysis: AnalysisRef


CanaryStep = SetWeight | Pause | AnalysisStep

#: The guide's canary: 10/25/50/100 % with a five-minute bake after each step.
DEFAULT_CANARY_STEPS: tuple[CanaryStep, ...] = (
    SetWeight(set_weight=10),
    Pause(pause=300),
    SetWeight(set_weight=25),
    Pause(pause=300),
    SetWeight(set_weight=50),
    Pause(pause=300),
    SetWeight(set_weight=100),
)


class RollingSpec(_Spec):
    """Rolling update: apply, then poll the Deployment until ready or the deadline."""

    progress_deadline: float = Field(600.0, gt=0, description="seconds; then undo")
    poll_interval: float = Field(5.0, gt=0)


class CanarySpec(_Spec):
    """Canary by replica share (stable and canary Deployments behind one Service)."""

    replicas: int | None = Field(None, ge=1, le=10_000, description="default: the manifest's")
    steps: tuple[CanaryStep, ...] = DEFAULT_CANARY_STEPS
    step_deadline: float = Field(600.0, gt=0, description="seconds for pods to become ready")
    poll_interval: float = Field(5.0, gt=0)


class BlueGreenSpec(_Spec):
    """Two colours, an active and a preview Service; promotion is one selector switch."""

    replicas: int | None = Field(None, ge=1, le=10_000)
    auto_promote: bool = False
    approval_timeout: float | None = Field(3600.0, gt=0, description="null: wait for ever")
    approval_timeout_action: ApprovalTimeoutAction = "abort"
    scale_down_delay: float = Field(30.0, ge=0, description="old colour kept as rollback target")
    pre_promotion_analysis: AnalysisRef | None = None
    post_promotion_analysis: AnalysisRef | None = Field(
        None, description="after the switch; failure switches traffic back"
    )
    preview_suffix: str = Field("-preview", pattern=r"^-[a-z0-9-]{1,20}$")
    step_deadline: float = Field(600.0, gt=0)
    poll_interval: float = Field(5.0, gt=0)


class StrategySpec(_Spec):
    """Per app and environment: the spec of each strategy (a request picks one)."""

    rolling: RollingSpec = RollingSpec()
    canary: CanarySpec = CanarySpec()
    blue_green: BlueGreenSpec = BlueGreenSpec()
    stall_after: float = Field(3600.0, gt=0, description="seconds in one phase -> stalled")


class AppPolicy(_Spec):
    """Where one app may be deployed from and to (V4: the payload does not choose)."""

    environments: dict[str, str] = Field(
        default_factory=dict, description="environment -> namespace it deploys to"
    )
    manifest_path: str | None = Field(None, description="default manifest file or directory")
    strategy: StrategySpec = StrategySpec()
    overrides: dict[str, StrategySpec] = Field(
        default_factory=dict, description="environment -> strategy spec for that environment"
    )

    def spec_for(self, environment: str) -> StrategySpec:
        """The strategy spec of ``environment`` (its override, else the app's)."""
        return self.overrides.get(environment, self.strategy)


class FlowsConfig(_Spec):
    """The flows configuration file: manifest roots, per-app policy and specs."""

    manifest_roots: tuple[str, ...] = Field(
        default=(), description="directories manifests must lie under (empty: any path refused)"
    )
    apps: dict[str, AppPolicy] = Field(default_factory=dict)
    default: StrategySpec = StrategySpec()
    analysis_templates: dict[str, AnalysisTemplate] = Field(default_factory=dict)
    allow_unlisted_apps: bool = Field(
        False, description="apps without an entry deploy to {app}-{environment}"
    )
    default_environments: tuple[str, ...] = ("staging", "production")

    @model_validator(mode="after")
    def _absolute_roots(self) -> FlowsConfig:
        for i, root in enumerate(self.manifest_roots):
            if not root.startswith("/"):
                raise ValueError(f"manifest_roots.{i}: {root!r} must be an absolute path")
        return self


# ---- per-request overrides -------------------------------------------------------------


class FlowOverrides(_Spec):
    """What a ``deployment.requested`` event may change for its own flow."""

    steps: tuple[CanaryStep, ...] | None = None
    replicas: int | None = Field(None, ge=1, le=10_000)
    auto_promote: bool | None = None
    approval_timeout: float | None = Field(None, gt=0)
    approval_timeout_action: ApprovalTimeoutAction | None = None
    scale_down_delay: float | None = Field(None, ge=0)
    progress_deadline: float | None = Field(None, gt=0)


# ---- durable state ---------------------------------------------------------------------


class Timer(BaseModel):
    """A wait: due at ``due`` (epoch seconds); ``token`` tells a live wake-up from a stale one."""

    model_config = ConfigDict(extra="forbid")

    due: float
    token: int


class FlowState(BaseModel):
    """One deployment flow; stored as JSON under ``Names.flow_key(id)``, written by CAS on
    ``rev``. ``steps`` is the compiled plan; ``outbox`` holds decided but not yet done
    actions (tool steps to run, events to publish, wake-ups to send)."""

    model_config = ConfigDict(extra="forbid")

    id: str
    rev: int = 0
    app: str
    version: str
    environment: str
    namespace: str
    strategy: Literal["rolling", "blue_green", "canary"]
    requested_by: str | None = None
    images: dict[str, bool | None] = Field(default_factory=dict, description="image -> scan ok")
    objects: list[dict[str, Any]] = Field(default_factory=list, description="manifests")
    meta: dict[str, Any] = Field(default_factory=dict, description="names, colours, replicas")
    phase: Phase = "pending"
    step: int = 0
    steps: list[dict[str, Any]] = Field(default_factory=list)
    step_state: dict[str, Any] = Field(default_factory=dict)
    timers: dict[str, Timer] = Field(default_factory=dict)
    outbox: list[dict[str, Any]] = Field(default_factory=list)
    seq: int = 0
    desired_weight: int | None = None
    actual_weight: float | None = None
    switched: bool = False
    reason: str | None = None
    evidence: str | None = None
    approval: dict[str, Any] | None = None
    journal: list[dict[str, Any]] = Field(default_factory=list)
    created_at: float = 0.0
    updated_at: float = 0.0
    phase_since: float = 0.0
    stall_after: float = 3600.0
    stalled: bool = False
    attempt: int = 1

    @property
    def terminal(self) -> bool:
        """True once the flow can no longer change by itself."""
        return self.phase in TERMINAL_PHASES

    def next_due(self) -> float | None:
        """When the earliest timer is due (None without timers)."""
        return min((t.due for t in self.timers.values()), default=None)
