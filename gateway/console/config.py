"""Who may use the console, and with which scope.

The console accepts two kinds of credential, both compared in constant time:

- the gateway's API keys (``api_keys`` of the gateway configuration, stored as SHA-256
  hashes): a key is ``read`` unless ``key_scopes`` names it ``operator`` (or ``none`` to
  keep it out of the console);
- bearer tokens configured here (``tokens``), each with its scope. Write the token as
  ``${VARIABLE}`` so that it stays out of the file.

Example ``console.yaml``::

    key_scopes: {deployer: operator}
    tokens:
      - {name: oncall, token: "${CONSOLE_ONCALL_TOKEN}", scope: operator}
    allowed_origins: ["https://console.example.com"]   # behind a TLS proxy
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator

from gateway.config import expand_env
from schemas.errors import ConfigError, SchemaError

_NAME = r"^[a-z0-9]([a-z0-9_-]{0,61}[a-z0-9])?$"


class Scope(StrEnum):
    """What a signed-in user may do: ``read`` looks, ``operator`` also changes state."""

    READ = "read"
    OPERATOR = "operator"


class ConsoleToken(BaseModel):
    """A bearer token for the console with its scope."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=_NAME)
    token: SecretStr
    scope: Scope = Scope.READ

    @field_validator("token")
    @classmethod
    def _long_enough(cls, value: SecretStr) -> SecretStr:
        if len(value.get_secret_value()) < 16:
            raise ValueError("must be at least 16 characters")
        return value


class ConsoleConfig(BaseModel):
    """The console's configuration document (YAML or JSON)."""

    model_config = ConfigDict(extra="forbid")

    key_scopes: dict[str, Scope | None] = Field(
        default_factory=dict, description="gateway API key name -> scope (null: refused)"
    )
    tokens: list[ConsoleToken] = Field(default_factory=list)
    allowed_origins: list[str] = Field(
        default_factory=list,
        description="origins accepted on state-changing requests besides the request's own",
    )
    session_ttl_seconds: int = Field(default=8 * 3600, ge=60, le=7 * 86400)
    max_sessions: int = Field(default=10_000, ge=1, le=1_000_000)
    max_streams: int = Field(
        default=50, ge=1, le=10_000, description="open event streams (one tap queue each)"
    )

    @field_validator("allowed_origins")
    @classmethod
    def _origins(cls, value: list[str]) -> list[str]:
        for origin in value:
            if not origin.startswith(("http://", "https://")) or origin.rstrip("/") != origin:
                raise ValueError(f"{origin!r} is not an origin like https://host[:port]")
        return value

    def scope_of_key(self, name: str) -> Scope | None:
        """The console scope of gateway API key ``name`` (read unless configured)."""
        return self.key_scopes.get(name, Scope.READ)


def parse_console_config(text: str, *, environ: dict[str, str] | None = None) -> ConsoleConfig:
    """Validate a console configuration document; errors name the field."""
    try:
        raw = yaml.safe_load(text) if text.strip() else {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"console config is not valid YAML/JSON: {exc}") from exc
    if not isinstance(raw, dict):
        raise ConfigError("console config must be a mapping at the top level")
    try:
        return ConsoleConfig.model_validate(expand_env(raw, environ))
    except ValidationError as exc:
        raise ConfigError(str(SchemaError.from_validation("console config", exc))) from exc


def load_console_config(path: str | Path | None) -> ConsoleConfig:
    """The configuration at ``path``; none given: gateway keys only, all read-only."""
    if path is None:
        return ConsoleConfig()
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read console config {path}: {exc}") from exc
    return parse_console_config(text)
