"""The deploy facade as a declared pipeline: its spec (``pipeline_facade.yaml`` in this
package, or ``CODEBUS_DEPLOY_PIPELINE``), the ids it mints, and the checks a spec must
pass to run the deploy unit's built-in actions.

The deployment flow id is derived from the request (a redelivery finds its flow, never
the caller's correlation id, V3); the facade run's id is derived from the flow id, so
either leads to the other.
"""

from __future__ import annotations

import functools
import uuid
from pathlib import Path

import yaml
from pydantic import ValidationError

from schemas.errors import field_errors
from schemas.workflows import WorkflowSpec

#: The deploy unit's actions; ``deploy.validate`` first (it creates the flow) and
#: ``deploy.rollout`` (the strategy) are required.
ACTIONS = ("deploy.validate", "deploy.build", "deploy.scan", "deploy.rollout", "deploy.notify")
DEFAULT_SPEC = Path(__file__).with_name("pipeline_facade.yaml")
RUN_PREFIX = "deploy-"

_FLOW_IDS = uuid.UUID("9a3e4f0c-2b61-4c1e-8f0d-5d7b2a6c3e11")


class FacadeSpecError(ValueError):
    """The deploy pipeline's spec is unreadable or invalid; names file and field."""


def mint_flow_id(subscription: str, event_id: str) -> str:
    """The deployment flow of one accepted request: derived from the delivery (so a
    redelivery finds its flow) and never from the caller's correlation id."""
    return "d-" + uuid.uuid5(_FLOW_IDS, f"{subscription}\x1f{event_id}").hex[:20]


def facade_run_id(flow_id: str) -> str:
    """The facade run of deployment flow ``flow_id``."""
    return RUN_PREFIX + flow_id.removeprefix("d-")


def check_facade(spec: WorkflowSpec, where: str = "deploy pipeline") -> WorkflowSpec:
    """``spec`` if the deploy unit can run it; FacadeSpecError naming the field if not."""
    if spec.kind != "pipeline":
        raise FacadeSpecError(f"{where}: kind: the deploy facade is a pipeline")
    for i, step in enumerate(spec.steps):
        if step.deploy is not None:
            raise FacadeSpecError(f"{where}: steps.{i}.deploy: the facade cannot request itself")
        if step.action is not None and step.action not in ACTIONS:
            raise FacadeSpecError(
                f"{where}: steps.{i}.action: unknown action {step.action!r} "
                f"(known: {', '.join(ACTIONS)})"
            )
    actions = [s.action for s in spec.steps]
    if actions[0] != "deploy.validate":
        raise FacadeSpecError(f"{where}: steps.0.action: must be deploy.validate")
    if "deploy.rollout" not in actions:
        raise FacadeSpecError(f"{where}: steps: a deploy.rollout step is required")
    if "flow_id" not in spec.inputs:
        raise FacadeSpecError(f"{where}: inputs: must list flow_id")
    return spec


def load_facade_spec(path: str | None = None) -> WorkflowSpec:
    """The facade spec at ``path`` (None: the shipped one), checked; read again when the
    file changed."""
    file = Path(path) if path else DEFAULT_SPEC
    try:
        mtime = file.stat().st_mtime_ns
    except OSError as exc:
        raise FacadeSpecError(f"cannot read deploy pipeline {file}: {exc.strerror}") from None
    return _load(file, mtime)


@functools.lru_cache(maxsize=8)
def _load(file: Path, mtime: int) -> WorkflowSpec:
    try:
        raw = yaml.safe_load(file.read_text()) or {}
        spec = WorkflowSpec.model_validate(raw)
    except OSError as exc:
        raise FacadeSpecError(f"cannot read deploy pipeline {file}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise FacadeSpecError(f"deploy pipeline {file} is not valid YAML: {exc}") from None
    except ValidationError as exc:
        raise FacadeSpecError(f"invalid deploy pipeline {file}: {field_errors(exc)}") from None
    return check_facade(spec, str(file))
