"""Building the toolbox a worker unit uses: real adapters from a YAML file
(``CODEBUS_TOOLS_CONFIG``) or in-memory fakes for the embedded mode, behind the full
guard chain, restricted to the unit's role (least privilege)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError, ValidationInfo, field_validator

from schemas.errors import field_errors
from schemas.names import Names
from tools.config import ToolboxConfig
from tools.extras import MissingExtra
from tools.servers import SERVER_KINDS, config_class, fake_class, server_class
from tools.spec import ToolServer
from tools.toolbox import Toolbox
from workers.settings import ConfigError
from workers.units import unit_roles

#: Least privilege: what each worker unit's role may call (declared with the unit, as
#: ``Unit.tools`` in workers/units.py).
UNIT_ROLES: dict[str, list[str]] = unit_roles()


class ToolsFile(BaseModel):
    """The tools configuration file: one optional section per tool server, plus the
    guard policy (``guards``). Servers without a section are not registered.

    A section is validated by its adapter's config model (``DockerConfig``, ...), which
    is imported only when the section is present: a worker imports the adapters (and
    their libraries) its file configures, nothing else (see ``tools.servers``)."""

    model_config = ConfigDict(extra="forbid")

    docker: Any = None  # DockerConfig
    kubernetes: Any = None  # KubernetesConfig
    security_scanner: Any = None  # SecurityScannerConfig
    s3_storage: Any = None  # S3Config
    slack_notifications: Any = None  # SlackConfig
    prometheus_monitoring: Any = None  # PrometheusConfig
    azure_devops: Any = None  # AzureDevOpsConfig
    desktop_commander: Any = None  # DesktopCommanderConfig
    guards: dict[str, Any] = {}

    @field_validator(*SERVER_KINDS, mode="before")
    @classmethod
    def _section(cls, value: Any, info: ValidationInfo) -> Any:
        if value is None:
            return None
        model = config_class(str(info.field_name))
        return value if isinstance(value, model) else model.model_validate(value)


def _sections(raw: Any, path: Path) -> dict[str, Any]:
    """The server sections of ``raw`` validated one by one, so that an error names the
    section and field (``docker.socket: ...``) and a missing extra names the extra."""
    if not isinstance(raw, dict):
        raise ConfigError(f"invalid tools config {path}: expected a mapping of sections")
    out: dict[str, Any] = {}
    errors: list[str] = []
    for key, value in raw.items():
        if key not in SERVER_KINDS or value is None:
            continue
        try:
            out[key] = config_class(key).model_validate(value)
        except MissingExtra as exc:
            raise ConfigError(f"tools config {path}: {exc}") from None
        except ValidationError as exc:
            errors.append(field_errors(exc, (key,)))
    if errors:
        raise ConfigError(f"invalid tools config {path}: {'; '.join(errors)}")
    return out


def load_tools_file(path: Path | None) -> ToolsFile:
    """Parse the YAML tools file; errors name the file and the field."""
    if path is None:
        return ToolsFile()
    try:
        raw = yaml.safe_load(Path(path).read_text()) or {}
        return ToolsFile.model_validate({**raw, **_sections(raw, path)})
    except OSError as exc:
        raise ConfigError(f"cannot read tools config {path}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"tools config {path} is not valid YAML: {exc}") from None
    except ValidationError as exc:
        raise ConfigError(f"invalid tools config {path}: {field_errors(exc)}") from None


def real_servers(cfg: ToolsFile) -> list[ToolServer]:
    """An adapter for every configured section; only those adapters are imported."""
    servers: list[ToolServer] = []
    for key in SERVER_KINDS:
        section = getattr(cfg, key)
        if section is not None:
            try:
                servers.append(server_class(key)(section))
            except MissingExtra as exc:
                raise ConfigError(str(exc)) from None
    return servers


def configured_servers(fake: bool, cfg: ToolsFile) -> list[ToolServer]:
    """The fakes (embedded mode, CODEBUS_FAKE_TOOLS) or the adapters ``cfg`` configures."""
    return fake_servers() if fake else real_servers(cfg)


def fake_servers() -> list[ToolServer]:
    """In-memory fakes of every tool server (embedded mode, demos, handler tests)."""
    return [fake_class(key)() for key in SERVER_KINDS]


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
    from bus.middleware.logs import current_event_fields
    from tools.guards.audit_sinks import RedisStreamSink

    return Toolbox(
        servers,
        redis=redis,
        config=config,
        names=names,
        audit_sinks=[RedisStreamSink(redis, names)],
        principal=principal,
        audit_origin=current_event_fields,
    )
