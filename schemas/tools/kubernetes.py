"""Argument and result models of the ``kubernetes`` tool server.

Argument names follow the integration guide (``manifest_path``, ``resource_type``,
``name``, ``namespace``, ``replicas``, ``timeout``). ``resource_type`` accepts what
kubectl accepts for built-in resources: plural, singular, short name or kind
(``deployments``, ``deployment``, ``deploy``, ``Deployment``), optionally qualified
with the group (``deployments.apps``); ``<plural>.<group>`` also names a custom
resource, which the adapter resolves through API discovery.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal, NamedTuple

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, field_validator, model_validator

# DNS-1123 label (namespaces) and subdomain (object names), as the API server checks them.
_LABEL = r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$"
_SUBDOMAIN = r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$"
_CUSTOM_RESOURCE = re.compile(r"^[a-z0-9-]+\.[a-z0-9-]+(\.[a-z0-9-]+)+$")


class ResourceKind(NamedTuple):
    """One API resource: where it lives and what it is called."""

    kind: str
    group: str  # "" for the core group
    version: str
    plural: str
    namespaced: bool = True
    short_names: tuple[str, ...] = ()

    @property
    def api_version(self) -> str:
        """``v1`` for the core group, else ``group/version``."""
        return f"{self.group}/{self.version}" if self.group else self.version


BUILTIN_RESOURCES: tuple[ResourceKind, ...] = (
    ResourceKind("Pod", "", "v1", "pods", True, ("po",)),
    ResourceKind("Service", "", "v1", "services", True, ("svc",)),
    ResourceKind("ConfigMap", "", "v1", "configmaps", True, ("cm",)),
    ResourceKind("Secret", "", "v1", "secrets"),
    ResourceKind("Namespace", "", "v1", "namespaces", False, ("ns",)),
    ResourceKind("ServiceAccount", "", "v1", "serviceaccounts", True, ("sa",)),
    ResourceKind("PersistentVolumeClaim", "", "v1", "persistentvolumeclaims", True, ("pvc",)),
    ResourceKind("PersistentVolume", "", "v1", "persistentvolumes", False, ("pv",)),
    ResourceKind("Node", "", "v1", "nodes", False, ("no",)),
    ResourceKind("Endpoints", "", "v1", "endpoints", True, ("ep",)),
    ResourceKind("Event", "", "v1", "events", True, ("ev",)),
    ResourceKind("ReplicationController", "", "v1", "replicationcontrollers", True, ("rc",)),
    ResourceKind("Deployment", "apps", "v1", "deployments", True, ("deploy",)),
    ResourceKind("ReplicaSet", "apps", "v1", "replicasets", True, ("rs",)),
    ResourceKind("StatefulSet", "apps", "v1", "statefulsets", True, ("sts",)),
    ResourceKind("DaemonSet", "apps", "v1", "daemonsets", True, ("ds",)),
    ResourceKind("Job", "batch", "v1", "jobs"),
    ResourceKind("CronJob", "batch", "v1", "cronjobs", True, ("cj",)),
    ResourceKind("Ingress", "networking.k8s.io", "v1", "ingresses", True, ("ing",)),
    ResourceKind("NetworkPolicy", "networking.k8s.io", "v1", "networkpolicies", True, ("netpol",)),
    ResourceKind(
        "HorizontalPodAutoscaler", "autoscaling", "v2", "horizontalpodautoscalers", True, ("hpa",)
    ),
    ResourceKind("PodDisruptionBudget", "policy", "v1", "poddisruptionbudgets", True, ("pdb",)),
    ResourceKind("Role", "rbac.authorization.k8s.io", "v1", "roles"),
    ResourceKind("RoleBinding", "rbac.authorization.k8s.io", "v1", "rolebindings"),
    ResourceKind("ClusterRole", "rbac.authorization.k8s.io", "v1", "clusterroles", False),
    ResourceKind(
        "ClusterRoleBinding", "rbac.authorization.k8s.io", "v1", "clusterrolebindings", False
    ),
    ResourceKind(
        "CustomResourceDefinition",
        "apiextensions.k8s.io",
        "v1",
        "customresourcedefinitions",
        False,
        ("crd", "crds"),
    ),
)

# Resources with a /scale subresource that kubectl scale accepts.
SCALABLE_KINDS = frozenset({"Deployment", "ReplicaSet", "StatefulSet", "ReplicationController"})


def _aliases(res: ResourceKind) -> set[str]:
    singular = res.kind.lower()
    return {res.plural, singular, *res.short_names}


def find_builtin(resource_type: str) -> ResourceKind | None:
    """Resolve ``deploy``/``deployments.apps``/``Deployment`` to a built-in resource."""
    text = resource_type.strip()
    name, _, group = text.partition(".")
    lowered = name.lower()
    for res in BUILTIN_RESOURCES:
        if lowered in _aliases(res) and (not group or group == res.group):
            return res
    return None


def find_builtin_kind(api_version: str, kind: str) -> ResourceKind | None:
    """The built-in resource of a manifest's ``apiVersion``/``kind``, if any."""
    for res in BUILTIN_RESOURCES:
        if res.kind == kind and res.api_version == api_version:
            return res
    return None


def _check_resource_type(value: str) -> str:
    value = value.strip()
    if find_builtin(value) is not None or _CUSTOM_RESOURCE.match(value):
        return value
    known = ", ".join(sorted(r.plural for r in BUILTIN_RESOURCES))
    raise ValueError(
        f"unknown resource type {value!r}; use one of {known} (or a short name, a kind, "
        "or <plural>.<group> for a custom resource)"
    )


class _Args(BaseModel):
    """Base of argument models: closed (a misspelt argument is an error naming it)."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class _Result(BaseModel):
    model_config = ConfigDict(frozen=True)


ObjectName = Annotated[str, Field(min_length=1, max_length=253, pattern=_SUBDOMAIN)]
NamespaceName = Annotated[str, Field(min_length=1, max_length=63, pattern=_LABEL)]


# ---- kubectl_apply -------------------------------------------------------------------------


class KubectlApplyArgs(_Args):
    """Server-side apply every object of a manifest file or directory, or of ``objects``
    given inline (exactly one of the two)."""

    manifest_path: str | None = Field(
        default=None, min_length=1, description="YAML/JSON file or directory of them"
    )
    objects: list[dict[str, Any]] | None = Field(
        default=None, min_length=1, max_length=100, description="manifests given inline"
    )
    namespace: NamespaceName | None = Field(
        default=None, description="namespace for namespaced objects that name none"
    )
    dry_run: bool = False
    force: bool = Field(default=False, description="take ownership of conflicting fields")

    @model_validator(mode="after")
    def _one_source(self) -> KubectlApplyArgs:
        if (self.manifest_path is None) == (self.objects is None):
            raise ValueError("manifest_path or objects: give exactly one of them")
        return self


AppliedAction = Literal["created", "configured", "unchanged"]


class AppliedObject(_Result):
    """One object sent to the API server, and what the apply did to it."""

    kind: str
    api_version: str
    name: str
    namespace: str | None
    action: AppliedAction


class KubectlApplyResult(_Result):
    """Every applied object in manifest order; ``status`` summarises them."""

    resources: list[AppliedObject]
    applied_resources: list[str] = Field(description='"deployment/app" style, as kubectl prints')
    status: Literal["created", "configured", "unchanged", "empty"]
    dry_run: bool


# ---- kubectl_get ---------------------------------------------------------------------------


class KubectlGetArgs(_Args):
    """List objects of a type, or fetch one by name."""

    resource_type: str
    name: ObjectName | None = None
    namespace: NamespaceName | None = None
    label_selector: str | None = Field(default=None, min_length=1, max_length=1000)
    field_selector: str | None = Field(default=None, min_length=1, max_length=1000)
    all_namespaces: bool = False

    _check_type = field_validator("resource_type")(_check_resource_type)

    @model_validator(mode="after")
    def _name_xor_all_namespaces(self) -> KubectlGetArgs:
        if self.name is not None and self.all_namespaces:
            raise ValueError("name and all_namespaces cannot be combined")
        return self


class KubectlGetResult(_Result):
    """The matching objects as the API returned them."""

    kind: str
    items: list[dict[str, Any]]


# ---- kubectl_delete ------------------------------------------------------------------------


class KubectlDeleteArgs(_Args):
    """Delete one named object, or every object of a manifest."""

    resource_type: str | None = None
    name: ObjectName | None = None
    manifest_path: str | None = Field(default=None, min_length=1)
    namespace: NamespaceName | None = None
    ignore_not_found: bool = True
    force: bool = Field(default=False, description="grace period 0: delete immediately")
    dry_run: bool = False

    @field_validator("resource_type")
    @classmethod
    def _check_type(cls, value: str | None) -> str | None:
        return None if value is None else _check_resource_type(value)

    @model_validator(mode="after")
    def _one_target(self) -> KubectlDeleteArgs:
        if (self.name is None) == (self.manifest_path is None):
            raise ValueError("give exactly one of name (with resource_type) or manifest_path")
        if self.name is not None and self.resource_type is None:
            raise ValueError("resource_type is required with name")
        return self


class DeletedObject(_Result):
    """One delete request and its outcome."""

    kind: str
    name: str
    namespace: str | None
    status: Literal["deleted", "not_found"]


class KubectlDeleteResult(_Result):
    """``success`` is false only when something asked for was not found."""

    deleted: list[DeletedObject]
    success: bool
    dry_run: bool


# ---- kubectl_scale -------------------------------------------------------------------------


class KubectlScaleArgs(_Args):
    """Set the replica count through the scale subresource."""

    resource_type: str = "deployment"
    name: ObjectName
    replicas: int = Field(ge=0, le=100_000)
    namespace: NamespaceName | None = None

    @field_validator("resource_type")
    @classmethod
    def _scalable(cls, value: str) -> str:
        res = find_builtin(_check_resource_type(value))
        if res is not None and res.kind not in SCALABLE_KINDS:
            raise ValueError(f"{res.plural} cannot be scaled; use one of {sorted(SCALABLE_KINDS)}")
        return value


class KubectlScaleResult(_Result):
    """The replica count before and after."""

    success: bool
    kind: str
    name: str
    namespace: str
    previous_replicas: int
    replicas: int


# ---- rollouts ------------------------------------------------------------------------------


def _deployment_only(value: str) -> str:
    res = find_builtin(value)
    if res is None or res.kind != "Deployment":
        raise ValueError("only deployments are supported (deployment, deployments, deploy)")
    return value


class KubectlRolloutStatusArgs(_Args):
    """Wait until a Deployment's rollout has finished."""

    resource_type: str = "deployment"
    name: ObjectName
    namespace: NamespaceName | None = None
    timeout: float = Field(default=300.0, gt=0, le=3600, description="seconds")
    watch: bool = Field(
        default=True,
        description="wait for the rollout (default); false: report the current state at once "
        "(kubectl rollout status --watch=false), never raising for an unfinished rollout",
    )

    _check_type = field_validator("resource_type")(_deployment_only)


class KubectlRolloutStatusResult(_Result):
    """The last observed rollout state (kubectl's criteria)."""

    status: Literal["success", "progressing", "failed"]
    ready: bool
    message: str
    name: str
    namespace: str
    generation: int
    observed_generation: int
    replicas: int = Field(description="desired (spec.replicas)")
    updated_replicas: int
    ready_replicas: int
    available_replicas: int
    total_replicas: int = Field(description="status.replicas: old and new pods")


class KubectlRolloutArgs(_Args):
    """Restart, undo, pause or resume a Deployment rollout."""

    action: Literal["restart", "undo", "pause", "resume"]
    resource_type: str = "deployment"
    name: ObjectName
    namespace: NamespaceName | None = None
    to_revision: int | None = Field(default=None, ge=1, description="undo target; default prev")

    _check_type = field_validator("resource_type")(_deployment_only)

    @model_validator(mode="after")
    def _revision_only_for_undo(self) -> KubectlRolloutArgs:
        if self.to_revision is not None and self.action != "undo":
            raise ValueError("to_revision is only valid with action 'undo'")
        return self


class KubectlRolloutResult(_Result):
    """What the rollout action did."""

    action: str
    name: str
    namespace: str
    changed: bool
    message: str
    revision: int | None = Field(default=None, description="revision rolled back to (undo)")


# ---- kubectl_logs --------------------------------------------------------------------------


class KubectlLogsArgs(_Args):
    """Read a pod's logs (the last ``tail_lines`` lines if given)."""

    pod_name: ObjectName = Field(validation_alias=AliasChoices("pod_name", "name", "pod"))
    container: NamespaceName | None = None
    namespace: NamespaceName | None = None
    tail_lines: int | None = Field(default=None, ge=0, le=1_000_000)
    previous: bool = False
    since_seconds: int | None = Field(default=None, ge=1)


class KubectlLogsResult(_Result):
    """Log text, possibly cut at the adapter's byte cap."""

    pod_name: str
    namespace: str
    container: str | None
    logs: str
    lines: int
    truncated: bool
