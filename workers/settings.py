"""Process settings from the environment (``CODEBUS_*``), validated at start-up.

A bad value stops the process with one line naming the variable, e.g.
``CODEBUS_CONCURRENCY: Input should be greater than or equal to 1``.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from pathlib import Path
from typing import Literal

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from bus.urls import parse_amqp_urls, parse_redis_url
from schemas.errors import ConfigError
from schemas.names import Names

__all__ = ["ConfigError", "Settings", "load_settings", "unknown_variables"]


class Settings(BaseSettings):
    """Everything a codebus process reads from its environment."""

    model_config = SettingsConfigDict(env_prefix="CODEBUS_", extra="ignore", frozen=True)

    amqp_url: str = Field(
        "amqp://guest:guest@localhost:5672/",
        description="RabbitMQ URL, or the cluster's nodes as comma-separated URLs",
    )
    amqp_shuffle: bool = Field(
        False, description="try the AMQP URLs in a random order (spreads replicas over nodes)"
    )
    quorum_initial_group_size: int | None = Field(
        None, ge=1, le=99, description="replicas of each new quorum queue; unset = all nodes"
    )
    redis_url: str = Field(
        "redis://localhost:6379/0",
        description="Redis URL, or redis+sentinel://host:26379,host:26380/service/db",
    )
    prefix: str = Field(
        "codebus",
        pattern=r"^[a-z][a-z0-9_-]{0,40}$",
        description="prefix of every exchange, queue and Redis key",
    )
    queue_type: Literal["quorum", "classic"] = "quorum"
    delivery_limit: int = Field(20, ge=1, le=1000)
    concurrency: int = Field(16, ge=1, le=10_000, description="prefetch per subscription")
    grace_period: float = Field(30.0, ge=0, le=3600)
    max_attempts: int = Field(5, ge=1, le=100)
    retry_base_delay: float = Field(1.0, ge=0, le=3600)
    retry_max_delay: float = Field(300.0, ge=0, le=4000)
    inbox_lease: float = Field(30.0, gt=0, le=3600)
    inbox_retention: float = Field(7 * 24 * 3600.0, gt=0)
    stall_after: float = Field(
        300.0, gt=0, le=86_400, description="not ready: prefetch full, nothing settled this long"
    )
    http_host: str = "0.0.0.0"
    http_port: int = Field(9464, ge=0, le=65535, description="health + metrics; 0 = off")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["text", "json"] = "text"
    source: str = Field("codebus", min_length=1, description="CloudEvents source of events")
    tools_config: Path | None = Field(None, description="YAML file configuring tool servers")
    fake_tools: bool = Field(False, description="use in-memory fakes of every tool server")
    gateway_config: Path | None = Field(None, description="YAML/JSON gateway configuration")
    flows_config: Path | None = Field(
        None, description="YAML deployment policy and strategy specs (progressive delivery)"
    )
    flows_bucket: str | None = Field(
        None,
        min_length=3,
        max_length=63,
        description="S3 bucket of the flow records (deployment repository); unset = none kept",
    )
    workitems_project: str = Field(
        "Operations", min_length=1, max_length=64, description="Azure DevOps project (workitems)"
    )

    @field_validator("amqp_url")
    @classmethod
    def _amqp_scheme(cls, v: str) -> str:
        parse_amqp_urls(v)
        return v

    @field_validator("redis_url")
    @classmethod
    def _redis_scheme(cls, v: str) -> str:
        parse_redis_url(v)
        return v

    @property
    def names(self) -> Names:
        """Topology and key names under this installation's prefix."""
        return Names(prefix=self.prefix)


def load_settings(**overrides: object) -> Settings:
    """Read the environment (plus ``overrides``); raise :class:`ConfigError` naming the
    ``CODEBUS_*`` variables that are wrong."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            field = ".".join(str(p) for p in err.get("loc", ()))
            lines.append(f"CODEBUS_{field.upper()}: {err.get('msg')}")
        raise ConfigError("invalid configuration: " + "; ".join(lines)) from None


#: ``CODEBUS_*`` variables read outside :class:`Settings` (the gateway command's options,
#: the service scripts). A variable read elsewhere belongs here, or it is warned about.
OTHER_VARIABLES = frozenset(
    {
        "CODEBUS_GATEWAY_HOST",
        "CODEBUS_GATEWAY_PORT",
        "CODEBUS_CONSOLE_CONFIG",
        "CODEBUS_CONSOLE_HOST",
        "CODEBUS_CONSOLE_PORT",
        "CODEBUS_SERVICES_DIR",
        "CODEBUS_RABBITMQ_HOME",
        "CODEBUS_UNKNOWN_EVENTS",  # schemas.catalog.unknown_policy
        "CODEBUS_DEPLOY_PIPELINE",  # workers.units.flow_deps, handlers.deployment
    }
)
#: Prefixes of variables owned by something else (the test harness).
OTHER_PREFIXES = ("CODEBUS_TEST_",)


def known_variables() -> frozenset[str]:
    """Every ``CODEBUS_*`` variable codebus reads."""
    fields = {f"CODEBUS_{name.upper()}" for name in Settings.model_fields}
    return frozenset(fields) | OTHER_VARIABLES


def unknown_variables(environ: Mapping[str, str]) -> list[str]:
    """One message per ``CODEBUS_*`` variable in ``environ`` that codebus does not read
    (a typo is otherwise silently ignored), naming the closest valid variable."""
    known = known_variables()
    messages = []
    for name in sorted(environ):
        if not name.startswith("CODEBUS_") or name in known or name.startswith(OTHER_PREFIXES):
            continue
        close = difflib.get_close_matches(name, known, n=1, cutoff=0.8)
        hint = f" (did you mean {close[0]}?)" if close else ""
        messages.append(f"{name} is not a codebus variable{hint}")
    return messages
