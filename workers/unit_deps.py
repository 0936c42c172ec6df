"""Dependency factories of the worker units that need more than the toolbox
(``Unit.deps``). Each takes the settings and the process's Redis client and raises
:class:`ConfigError` naming the setting that is missing or wrong."""

from __future__ import annotations

from typing import Any

from workers.settings import ConfigError, Settings


def webhooks(settings: Settings, redis: Any) -> dict[str, Any]:
    """The outbound subscriptions (from the gateway configuration), the signing sender
    and the delivery log."""
    from gateway.config import load_config
    from handlers.webhooks import webhook_deps

    if settings.gateway_config is None:
        raise ConfigError("the webhooks unit needs CODEBUS_GATEWAY_CONFIG (subscriptions)")
    try:
        config = load_config(settings.gateway_config)
        return webhook_deps(config, redis, settings.names)
    except ValueError as exc:  # gateway.config.ConfigError / webhook_deps name the field
        raise ConfigError(str(exc)) from None


def embedded_flows(settings: Settings, redis: Any) -> dict[str, Any]:
    """The ``deploy`` and ``workflows`` units in the embedded system: nothing of their
    own; flow records, flows configuration and sweep intervals are the embedded
    system's (in memory, see workers.embedded)."""
    return {}


def embedded_webhooks(settings: Settings, redis: Any) -> dict[str, Any]:
    """The ``webhooks`` unit in the embedded system: the gateway configuration's
    subscriptions when ``CODEBUS_GATEWAY_CONFIG`` is set, else none (every event is
    acked with nothing to deliver)."""
    from schemas.gateway_config import GatewayConfig

    if settings.gateway_config is not None:
        return webhooks(settings, redis)
    from handlers.webhooks import webhook_deps

    return webhook_deps(GatewayConfig(), redis, settings.names)
