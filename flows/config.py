"""The flows configuration (``CODEBUS_FLOWS_CONFIG``) and the deployment policy it sets.

V4: the payload does not choose where a deployment goes. Manifests must lie under a
configured root (symlinks resolved), the namespace comes from the app's policy (or
``{app}-{environment}`` for the configured default environments), system namespaces are
never targets, and the images scanned are exactly the images the manifests run.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from flows.objects import images_of
from flows.plan import PlanError, compile_plan
from schemas.errors import field_errors
from schemas.events import DeploymentRequested
from schemas.flows import FlowsConfig, FlowState
from tools.adapters.kubernetes_manifests import load_manifests
from tools.errors import ToolArgumentError

RESERVED_NAMESPACES = frozenset({"kube-system", "kube-public", "kube-node-lease", "default"})


class FlowsConfigError(ValueError):
    """The flows configuration file is unreadable or invalid; names file and field."""


class PolicyError(ValueError):
    """A deployment request the policy refuses; the message names the field."""


def default_config() -> FlowsConfig:
    """Without a file: manifests under ``./k8s`` of the working directory, any app to
    ``{app}-staging`` / ``{app}-production``, default strategy specs."""
    return FlowsConfig(manifest_roots=(os.path.abspath("k8s"),), allow_unlisted_apps=True)


def load_flows_config(path: Path | None) -> FlowsConfig:
    """Parse and validate the YAML file (None: :func:`default_config`)."""
    if path is None:
        return default_config()
    try:
        raw = yaml.safe_load(Path(path).read_text()) or {}
        return FlowsConfig.model_validate(raw)
    except OSError as exc:
        raise FlowsConfigError(f"cannot read flows config {path}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise FlowsConfigError(f"flows config {path} is not valid YAML: {exc}") from None
    except ValidationError as exc:
        raise FlowsConfigError(f"invalid flows config {path}: {field_errors(exc)}") from None


def namespace_for(config: FlowsConfig, app: str, environment: str) -> str:
    """Where ``app`` deploys in ``environment``; PolicyError if nowhere."""
    policy = config.apps.get(app)
    if policy is not None and policy.environments:
        if environment not in policy.environments:
            allowed = ", ".join(sorted(policy.environments))
            raise PolicyError(
                f"data.environment: {app} may deploy to {allowed}, not {environment!r}"
            )
        namespace = policy.environments[environment]
    elif policy is not None or config.allow_unlisted_apps:
        if environment not in config.default_environments:
            allowed = ", ".join(config.default_environments)
            raise PolicyError(f"data.environment: must be one of {allowed}, not {environment!r}")
        namespace = f"{app}-{environment}"[:63]
    else:
        raise PolicyError(f"data.app: {app!r} has no deployment policy in the flows config")
    if namespace in RESERVED_NAMESPACES or namespace.startswith("kube-"):
        raise PolicyError(f"data.environment: namespace {namespace!r} is reserved")
    return namespace


def manifest_path_for(config: FlowsConfig, req: DeploymentRequested) -> str:
    """The manifest path the request may use: under a configured root, symlinks resolved."""
    policy = config.apps.get(req.app)
    given = req.manifest_path or (policy.manifest_path if policy else None)
    if given is None:
        roots = config.manifest_roots
        given = os.path.join(roots[0], req.app) if roots else f"k8s/{req.app}"
    real = os.path.realpath(given)
    for root in config.manifest_roots:
        root_real = os.path.realpath(root)
        if real == root_real or real.startswith(root_real.rstrip("/") + "/"):
            return real
    allowed = ", ".join(config.manifest_roots) or "(none configured)"
    raise PolicyError(f"data.manifest_path: {given} is not under an allowed root ({allowed})")


def new_flow(
    config: FlowsConfig, req: DeploymentRequested, flow_id: str
) -> tuple[FlowState, list[str]]:
    """The initial state of a flow for ``req`` and the images to scan; PolicyError or
    PlanError (both ValueErrors naming the field) when the request cannot be run."""
    namespace = namespace_for(config, req.app, req.environment)
    path = manifest_path_for(config, req)
    try:
        objects: list[dict[str, Any]] = load_manifests(path, tool="flows")
    except ToolArgumentError as exc:
        raise PolicyError(str(exc).replace("manifest_path:", "data.manifest_path:", 1)) from None
    images = images_of(objects)
    if not images:
        raise PolicyError(f"data.manifest_path: {path} runs no container image")
    if req.image is not None and req.image not in images:
        raise PolicyError(
            f"data.image: {req.image} is not an image the manifests run ({', '.join(images)})"
        )
    policy = config.apps.get(req.app)
    spec = policy.spec_for(req.environment) if policy else config.default
    try:
        steps, meta = compile_plan(
            req.strategy, spec, objects, req.overrides, config.analysis_templates
        )
    except PlanError as exc:
        raise PolicyError(str(exc)) from None
    state = FlowState(
        id=flow_id,
        app=req.app,
        version=req.version,
        environment=req.environment,
        namespace=namespace,
        strategy=req.strategy,
        requested_by=req.requested_by,
        images={image: None for image in images},
        objects=objects,
        meta=meta,
        steps=steps,
        stall_after=spec.stall_after,
    )
    return state, images
