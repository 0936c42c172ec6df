"""Building the toolbox a worker unit uses: real adapters from a YAML file
(``CODEBUS_TOOLS_CONFIG``) or in-memory fakes for the embedded mode, behind the full
guard chain, restricted to the unit's role (least privilege)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from schemas.names import Names
from tools.adapters.azure_devops import AzureDevOpsConfig, AzureDevOpsServer
from tools.adapters.azure_devops_fake import FakeAzureDevOpsServer
from tools.adapters.desktop_commander import DesktopCommanderConfig, DesktopCommanderServer
from tools.adapters.desktop_commander_fake import FakeDesktopCommanderServer
from tools.adapters.docker import DockerConfig, DockerServer
from tools.adapters.docker_fake import FakeDockerServer
from tools.adapters.kubernetes import KubernetesServer
from tools.adapters.kubernetes_client import KubernetesConfig
from tools.adapters.kubernetes_fake import FakeKubernetesServer
from tools.adapters.prometheus import PrometheusConfig, PrometheusServer
from tools.adapters.prometheus_fake import FakePrometheusServer
from tools.adapters.s3_storage import S3Config, S3StorageServer
from tools.adapters.s3_storage_fake import FakeS3StorageServer
from tools.adapters.security_scanner import SecurityScannerConfig, SecurityScannerServer
from tools.adapters.security_scanner_fake import FakeSecurityScannerServer
from tools.adapters.slack import SlackConfig, SlackNotificationsServer
from tools.adapters.slack_fake import FakeSlackServer
from tools.config import ToolboxConfig
from tools.spec import ToolServer
from tools.toolbox import Toolbox
from workers.settings import ConfigError
from workers.units import unit_roles

#: Least privilege: what each worker unit's role may call (declared with the unit, as
#: ``Unit.tools`` in workers/units.py).
UNIT_ROLES: dict[str, list[str]] = unit_roles()


class ToolsFile(BaseModel):
    """The tools configuration file: one optional section per tool server, plus the
    guard policy (``guards``). Servers without a section are not registered."""

    model_config = ConfigDict(extra="forbid")

    docker: DockerConfig | None = None
    kubernetes: KubernetesConfig | None = None
    security_scanner: SecurityScannerConfig | None = None
    s3_storage: S3Config | None = None
    slack_notifications: SlackConfig | None = None
    prometheus_monitoring: PrometheusConfig | None = None
    azure_devops: AzureDevOpsConfig | None = None
    desktop_commander: DesktopCommanderConfig | None = None
    guards: dict[str, Any] = {}


_REAL = {
    "docker": DockerServer,
    "kubernetes": KubernetesServer,
    "security_scanner": SecurityScannerServer,
    "s3_storage": S3StorageServer,
    "slack_notifications": SlackNotificationsServer,
    "prometheus_monitoring": PrometheusServer,
    "azure_devops": AzureDevOpsServer,
    "desktop_commander": DesktopCommanderServer,
}


def load_tools_file(path: Path | None) -> ToolsFile:
    """Parse the YAML tools file; errors name the file and the field."""
    if path is None:
        return ToolsFile()
    try:
        raw = yaml.safe_load(Path(path).read_text()) or {}
        return ToolsFile.model_validate(raw)
    except OSError as exc:
        raise ConfigError(f"cannot read tools config {path}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"tools config {path} is not valid YAML: {exc}") from None
    except ValidationError as exc:
        fields = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()
        )
        raise ConfigError(f"invalid tools config {path}: {fields}") from None


def real_servers(cfg: ToolsFile) -> list[ToolServer]:
    """An adapter for every configured section."""
    return [cls(getattr(cfg, key)) for key, cls in _REAL.items() if getattr(cfg, key) is not None]


def configured_servers(fake: bool, cfg: ToolsFile) -> list[ToolServer]:
    """The fakes (embedded mode, CODEBUS_FAKE_TOOLS) or the adapters ``cfg`` configures."""
    return fake_servers() if fake else real_servers(cfg)


def fake_servers() -> list[ToolServer]:
    """In-memory fakes of every tool server (embedded mode, demos, handler tests)."""
    return [
        FakeDockerServer(),
        FakeKubernetesServer(),
        FakeSecurityScannerServer(),
        FakeS3StorageServer(),
        FakeSlackServer(),
        FakePrometheusServer(),
        FakeAzureDevOpsServer(),
        FakeDesktopCommanderServer(),
    ]


#: Per-tool guard overrides that the tools' own semantics call for (a file may change them).
TOOL_OVERRIDES: dict[str, dict[str, Any]] = {
    # Waits up to its own ``timeout`` argument; a timeout means "roll back", not "retry".
    # A slow rollout says nothing about the API server's health: no breaker either.
    "kubernetes.kubectl_rollout_status": {
        "retry": False,
        "timeout": None,
        "cache": False,
        "breaker": False,
    },
    "docker.docker_build": {"timeout": 900},
    "security-scanner.docker_security_scan": {"timeout": 600},
    # Running a command twice is not harmless.
    "desktop-commander.execute_command": {"retry": False},
    "desktop-commander.make_command": {"retry": False},
}


def guard_config(cfg: ToolsFile) -> ToolboxConfig:
    """The guard policy with the unit roles filled in (a file may extend them)."""
    guards = dict(cfg.guards)
    roles = {**UNIT_ROLES, **guards.pop("roles", {})}
    tools: dict[str, Any] = {k: dict(v) for k, v in TOOL_OVERRIDES.items()}
    for name, override in guards.pop("tools", {}).items():
        tools[name] = {**tools.get(name, {}), **override}
    try:
        return ToolboxConfig.model_validate({**guards, "roles": roles, "tools": tools})
    except ValidationError as exc:
        raise ConfigError(f"invalid guards section: {exc.errors()[0]['msg']}") from None


def build_toolbox(
    servers: list[ToolServer], redis: Any, names: Names, config: ToolboxConfig, principal: str
) -> Toolbox:
    """The toolbox with its guard chain; audit records go to the Redis stream."""
    from tools.guards.audit_sinks import RedisStreamSink

    return Toolbox(
        servers,
        redis=redis,
        config=config,
        names=names,
        audit_sinks=[RedisStreamSink(redis, names)],
        principal=principal,
    )
