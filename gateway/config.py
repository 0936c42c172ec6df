"""Loading the gateway configuration document from a YAML or JSON file.

String values may reference environment variables as ``${NAME}`` so that secrets stay
out of the file (``secret: ${GITHUB_WEBHOOK_SECRET}``); a missing variable is an error.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from schemas.errors import ConfigError, SchemaError
from schemas.gateway_config import GatewayConfig

_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def expand_env(value: Any, environ: Mapping[str, str] | None = None) -> Any:
    """Replace ``${NAME}`` in every string of ``value`` from ``environ``."""
    env = os.environ if environ is None else environ
    if isinstance(value, str):

        def repl(match: re.Match[str]) -> str:
            name = match.group(1)
            if name not in env:
                raise ConfigError(f"environment variable {name} is not set")
            return env[name]

        return _ENV_REF.sub(repl, value)
    if isinstance(value, list):
        return [expand_env(v, env) for v in value]
    if isinstance(value, dict):
        return {k: expand_env(v, env) for k, v in value.items()}
    return value


def parse_config(text: str, *, environ: Mapping[str, str] | None = None) -> GatewayConfig:
    """Parse YAML (a superset of JSON) text into a validated :class:`GatewayConfig`."""
    try:
        raw = yaml.safe_load(text) if text.strip() else {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"gateway config is not valid YAML/JSON: {exc}") from exc
    if not isinstance(raw, dict):
        raise ConfigError("gateway config must be a mapping at the top level")
    try:
        config = GatewayConfig.model_validate(expand_env(raw, environ))
    except ValidationError as exc:
        raise ConfigError(str(SchemaError.from_validation("gateway config", exc))) from exc
    check_subscription_urls(config)
    return config


def check_subscription_urls(config: GatewayConfig) -> None:
    """Parse every subscription URL as delivery will (the SSRF guard's parser), so that a
    URL it would refuse stops the process at load, naming the field."""
    from tools.webhooks.ssrf import WebhookBlocked, parse_target  # yarl: the tool layer

    for i, sub in enumerate(config.subscriptions):
        try:
            parse_target(sub.url)
        except WebhookBlocked as exc:
            # The message never quotes the URL: it may hold credentials.
            raise ConfigError(f"gateway config: subscriptions.{i}.url: {exc}") from None


def load_config(path: str | Path, *, environ: Mapping[str, str] | None = None) -> GatewayConfig:
    """Read and validate the configuration file at ``path`` (``.yaml``/``.yml``/``.json``)."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read gateway config {path}: {exc}") from exc
    if str(path).endswith(".json"):
        try:
            json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"gateway config {path} is not valid JSON: {exc}") from exc
    return parse_config(text, environ=environ)
