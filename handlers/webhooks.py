"""The ``webhooks`` unit: deliver events to the configured outbound subscriptions.

One subscription (``webhooks.deliver``) receives every event. For each outbound
subscription whose patterns match the event type it POSTs a signed Standard Webhook.
On a retry, subscriptions that already acknowledged the event (per the delivery log)
are skipped, so only the failed ones are tried again; one that failed permanently is
not retried within the same run (attempt > 1) but still makes the event dead-letter,
and a replay from the dead-letter queue (attempt 1) tries it again.

Dependencies are a :class:`handlers.deps.WebhookDeps` (see :func:`webhook_deps`):
``webhook_config`` (:class:`GatewayConfig`, required), and optionally ``webhook_sender``
(:class:`WebhookSender`) and ``delivery_log`` (:class:`DeliveryLog`), which are
otherwise built from the config and the worker's Redis and names.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any, Literal

from bus.context import HandlerContext
from bus.errors import Reject, Retry
from bus.router import Router
from handlers.deps import WebhookDeps
from schemas.envelope import Event
from schemas.gateway_config import GatewayConfig, OutboundSubscription
from schemas.names import Names
from tools.errors import ToolFailed, ToolTransientError
from tools.webhooks.delivery import WebhookSender, WebhookTransientError
from tools.webhooks.log import DeliveryLog, State
from tools.webhooks.redact import scrub
from tools.webhooks.ssrf import WebhookBlocked, parse_target

router = Router(unit="webhooks")

CONFIG = "webhook_config"
SENDER = "webhook_sender"
LOG = "delivery_log"


def webhook_deps(config: GatewayConfig, redis: Any, names: Names) -> dict[str, Any]:
    """The ``deps`` entries this unit needs, built from the gateway configuration.

    Subscription URLs are parsed here as delivery will parse them: a URL it would refuse
    stops the worker at start (``ValueError`` naming the field), not at the first event.
    """
    for i, sub in enumerate(config.subscriptions):
        try:
            parse_target(sub.url)
        except WebhookBlocked as exc:
            raise ValueError(f"subscriptions.{i}.url ({sub.name}): {exc}") from None
    return {
        CONFIG: config,
        SENDER: WebhookSender(allowed_cidrs=config.ssrf_allowed_cidrs),
        LOG: DeliveryLog(redis, names),
    }


def _dependencies(ctx: HandlerContext) -> tuple[GatewayConfig, WebhookSender, DeliveryLog]:
    deps = WebhookDeps.of(ctx)
    config = deps.webhook_config
    if not isinstance(config, GatewayConfig):
        # A wiring error: retried (then dead-lettered) rather than silently acked.
        raise RuntimeError(f"the webhooks unit needs {CONFIG!r}: a GatewayConfig")
    sender = deps.webhook_sender or WebhookSender(allowed_cidrs=config.ssrf_allowed_cidrs)
    log = deps.delivery_log or DeliveryLog(ctx.redis, ctx.names)
    return config, sender, log


@router.subscribe("#", name="webhooks.deliver")
async def deliver(event: Event, ctx: HandlerContext) -> None:
    """Deliver ``event`` to every matching outbound subscription not yet served.

    Subscriptions are served concurrently, so one slow receiver does not hold up the
    others. Any transient failure -> ``Retry`` (delayed by the receivers' ``Retry-After``
    when every transient failure gave one); otherwise any permanent failure -> ``Reject``
    naming the subscriptions.
    """
    config, sender, log = _dependencies(ctx)
    subs = config.matching_subscriptions(event.type)
    outcomes = await asyncio.gather(*(_serve(sub, event, ctx, sender, log) for sub in subs))

    transient = [o for o in outcomes if o.kind == "transient"]
    permanent = [o for o in outcomes if o.kind == "permanent"]
    if transient:
        hints = [o.retry_after for o in transient if o.retry_after is not None]
        # Retrying before a receiver's Retry-After only earns another 429.
        delay = max(hints) if len(hints) == len(transient) else None
        raise Retry("; ".join(o.reason for o in transient), delay=delay)
    if permanent:
        raise Reject("; ".join(o.reason for o in permanent))


@dataclass(frozen=True)
class _Outcome:
    kind: Literal["done", "transient", "permanent"]
    reason: str = ""
    retry_after: float | None = None


async def _serve(
    sub: OutboundSubscription,
    event: Event,
    ctx: HandlerContext,
    sender: WebhookSender,
    log: DeliveryLog,
) -> _Outcome:
    previous = await log.get(event.id, sub.name)
    if previous is not None and previous.state == "succeeded":
        return _Outcome("done")
    if previous is not None and previous.state == "failed" and ctx.attempt > 1:
        # Failed for good earlier in this run: don't hammer it on every retry, but keep
        # it in the outcome so that the event still ends up dead-lettered.
        return _Outcome("permanent", f"{sub.name}: {previous.last_error}")
    try:
        result = await sender.deliver(sub, event)
    except ToolTransientError as exc:
        await _record(log, sub, event, "retrying", exc.status, str(exc))
        hint = exc.retry_after if isinstance(exc, WebhookTransientError) else None
        return _Outcome("transient", f"{sub.name}: {scrub(str(exc), sub.url)}", hint)
    except ToolFailed as exc:
        await _record(log, sub, event, "failed", exc.status, str(exc))
        return _Outcome("permanent", f"{sub.name}: {scrub(str(exc), sub.url)}")
    except Exception as exc:
        # Anything else is a defect about this one subscription (e.g. a URL only the
        # delivery path refuses): fail it alone, keep the others' outcomes.
        reason = scrub(f"internal error: {type(exc).__name__}: {exc}", sub.url)
        ctx.logger.error("delivery to %s failed: %s", sub.name, reason)
        await _record(log, sub, event, "failed", None, reason)
        return _Outcome("permanent", f"{sub.name}: {reason}")
    await _record(log, sub, event, "succeeded", result.status, None)
    ctx.logger.info("delivered to %s (%s) in %.3fs", sub.name, result.status, result.duration)
    return _Outcome("done")


async def _record(
    log: DeliveryLog,
    sub: OutboundSubscription,
    event: Event,
    state: State,
    status: int | None,
    error: str | None,
) -> None:
    await log.record(
        subscription=sub.name,
        url=sub.url,
        event_id=event.id,
        event_type=event.type,
        state=state,
        status_code=status,
        error=error,
    )
