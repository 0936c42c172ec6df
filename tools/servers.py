"""The catalogue of tool server kinds: for each section of the tools file, where its
adapter, its config model and its fake live, and which ``codebus[extra]`` brings the
libraries it needs. Nothing here imports an adapter: a worker imports only the adapters
its tools file configures (:func:`server_class`, :func:`config_class`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tools.extras import import_for


@dataclass(frozen=True)
class ServerKind:
    """One tool server kind, by the section name of the tools file."""

    section: str
    adapter: str  # "module:ServerClass"
    config: str  # "module:ConfigClass"
    fake: str  # "module:FakeClass"
    extra: str | None  # the codebus[extra] its libraries come in (None: core)


SERVER_KINDS: dict[str, ServerKind] = {
    k.section: k
    for k in (
        ServerKind(
            "docker",
            "tools.adapters.docker:DockerServer",
            "tools.adapters.docker:DockerConfig",
            "tools.fakes.docker:FakeDockerServer",
            "docker",
        ),
        ServerKind(
            "kubernetes",
            "tools.adapters.kubernetes:KubernetesServer",
            "tools.adapters.kubernetes_client:KubernetesConfig",
            "tools.fakes.kubernetes:FakeKubernetesServer",
            "kubernetes",
        ),
        ServerKind(
            "security_scanner",
            "tools.adapters.security_scanner:SecurityScannerServer",
            "tools.adapters.security_scanner:SecurityScannerConfig",
            "tools.fakes.security_scanner:FakeSecurityScannerServer",
            "scanner",
        ),
        ServerKind(
            "s3_storage",
            "tools.adapters.s3_storage:S3StorageServer",
            "tools.adapters.s3_storage:S3Config",
            "tools.fakes.s3_storage:FakeS3StorageServer",
            "s3",
        ),
        ServerKind(
            "slack_notifications",
            "tools.adapters.slack:SlackNotificationsServer",
            "tools.adapters.slack:SlackConfig",
            "tools.fakes.slack:FakeSlackServer",
            None,
        ),
        ServerKind(
            "prometheus_monitoring",
            "tools.adapters.prometheus:PrometheusServer",
            "tools.adapters.prometheus:PrometheusConfig",
            "tools.fakes.prometheus:FakePrometheusServer",
            None,
        ),
        ServerKind(
            "azure_devops",
            "tools.adapters.azure_devops:AzureDevOpsServer",
            "tools.adapters.azure_devops:AzureDevOpsConfig",
            "tools.fakes.azure_devops:FakeAzureDevOpsServer",
            None,
        ),
        ServerKind(
            "desktop_commander",
            "tools.adapters.desktop_commander:DesktopCommanderServer",
            "tools.adapters.desktop_commander:DesktopCommanderConfig",
            "tools.fakes.desktop_commander:FakeDesktopCommanderServer",
            None,
        ),
    )
}


def _load(ref: str, kind: ServerKind) -> Any:
    module, _, attr = ref.partition(":")
    needed_by = f"the {kind.section} tool server"
    return getattr(import_for(module, kind.extra or "all", needed_by), attr)


def server_class(section: str) -> Any:
    """The adapter class of ``section`` (imports its module and libraries now)."""
    kind = SERVER_KINDS[section]
    return _load(kind.adapter, kind)


def config_class(section: str) -> Any:
    """The config model of ``section`` (imports its adapter's module now)."""
    kind = SERVER_KINDS[section]
    return _load(kind.config, kind)


def fake_class(section: str) -> Any:
    """The in-memory fake of ``section`` (fakes need no optional library)."""
    kind = SERVER_KINDS[section]
    return _load(kind.fake, kind)
