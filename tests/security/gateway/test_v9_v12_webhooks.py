"""Outbound webhooks: V9 (subscription-URL credentials never stored, logged or put in a
retry/dead-letter reason), V12 (URLs validated at load with the SSRF guard's parser; one
subscription's failure isolated) and the worker's Redis pool under many subscriptions."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
import redis.asyncio as aioredis
from click.testing import CliRunner

from bus.errors import Reject, Retry
from bus.memory import MemoryBroker
from gateway.config import ConfigError, parse_config
from handlers.webhooks import deliver, webhook_deps
from schemas.gateway_config import GatewayConfig
from tests.handlers.test_webhooks import (
    OUT_SECRET,
    Receiver,
    context,
    deployment_completed,
    outbound_config,
    serve,
)
from tests.reports import report
from tools.webhooks.delivery import WebhookSender
from tools.webhooks.log import DeliveryLog, record_id
from workers.cli_gateway import deliveries

__all__ = ["serve"]

PASSWORD = "Pa55w0rd-9f1c"
TOKEN = "qtok-77ab31"
SECRETS = (PASSWORD, TOKEN)


def with_credentials(url: str) -> str:
    """``url`` with a password in its userinfo and a token in its query string."""
    scheme, rest = url.split("://", 1)
    return f"{scheme}://hookuser:{PASSWORD}@{rest}?token={TOKEN}"


def leaks(*texts: Any) -> list[str]:
    return [s for s in SECRETS for t in texts if t is not None and s in str(t)]


async def test_credentials_stay_out_of_log_reasons_and_cli(
    serve, redis_client, redis_url, names
) -> None:
    failing, gone = Receiver(503, 503), Receiver(404)
    refused = "http://127.0.0.1:1/hook"  # nothing listens: a connection error
    config = outbound_config(
        ("flaky", with_credentials(await serve(failing)), ["#"]),
        ("gone", with_credentials(await serve(gone)), ["#"]),
        ("refused", with_credentials(refused), ["#"]),
        ("meta", with_credentials("http://169.254.169.254/latest"), ["#"]),
    )
    deps = webhook_deps(config, redis_client, names)
    event = deployment_completed()
    broker = MemoryBroker(names)
    reasons = []
    for attempt in (1, 2):
        with pytest.raises((Retry, Reject)) as info:
            await deliver(event, context(event, deps, attempt, broker))
        reasons.append(str(info.value))
    log: DeliveryLog = deps["delivery_log"]
    records = [await log.get(event.id, name) for name in ("flaky", "gone", "refused", "meta")]
    stored = await redis_client.hgetall(names.deliveries_key)

    def run(*args: str):
        return CliRunner().invoke(
            deliveries, list(args), obj={"redis_url": redis_url, "names": names}
        )

    cli_outputs = [(await asyncio.to_thread(run, *a)).output for a in ((), ("--json",))]
    found = leaks(*reasons, *(r.model_dump_json() for r in records if r), stored, *cli_outputs)
    report(
        "webhooks_url_credentials",
        f"places_checked={len(reasons) + len(records) + len(stored) + len(cli_outputs)} "
        f"leaked={len(found)}",
    )
    assert found == []
    assert all(r is not None for r in records)
    # Still useful to an operator: scheme, host, port and path stay.
    assert records[0].url.startswith("http://***@127.0.0.1:")
    assert records[0].url.endswith("/hook?token=***")


async def test_old_unredacted_records_are_redacted_when_read(
    redis_client, redis_url, names
) -> None:
    """Records written before the fix are cleaned on the way out of the log."""
    raw = {
        "subscription": "old",
        "url": with_credentials("https://rx.example/hook"),
        "event_id": "e-old",
        "event_type": "deployment.completed",
        "state": "failed",
        "status_code": 401,
        "attempts": 1,
        "last_error": f"{with_credentials('https://rx.example/hook')} answered 401",
        "first_attempt_at": 1.0,
        "last_attempt_at": 1.0,
    }
    await redis_client.hset(names.deliveries_key, record_id("e-old", "old"), json.dumps(raw))
    await redis_client.zadd(names.deliveries_index_key, {record_id("e-old", "old"): 1.0})
    record = await DeliveryLog(redis_client, names).get("e-old", "old")
    assert record is not None and leaks(record.model_dump_json()) == []

    def run():
        return CliRunner().invoke(
            deliveries, ["--json"], obj={"redis_url": redis_url, "names": names}
        )

    assert leaks((await asyncio.to_thread(run)).output) == []


@pytest.mark.parametrize(
    "url",
    [
        "https://example.com\\@127.0.0.1/hook",
        "https://ex\\ample.com/hook",
        "https://exa mple.com/hook",
        "https://:443/hook",
        "https://example.com:99999/hook",
    ],
)
def test_bad_subscription_urls_are_refused_at_load(url, redis_client, names) -> None:
    doc = {"subscriptions": [{"name": "s", "url": url, "patterns": ["#"], "secret": OUT_SECRET}]}
    with pytest.raises(ConfigError, match=r"subscriptions\.0\.url"):
        parse_config(json.dumps(doc))
    config = GatewayConfig.model_validate(doc)  # built in code: the worker refuses it
    with pytest.raises(ValueError, match=r"subscriptions\.0\.url"):
        webhook_deps(config, redis_client, names)


async def test_one_failing_subscription_does_not_fail_the_others(
    serve, redis_client, names
) -> None:
    """V12: an unexpected error for one subscription (here: a URL that only the
    delivery-time parser refuses) is that subscription's permanent failure; the others
    are delivered and the event is not retried for them."""
    ok = Receiver()
    config = outbound_config(("ok", await serve(ok), ["#"]))
    deps = webhook_deps(config, redis_client, names)
    bad = config.subscriptions[0].model_copy(
        update={"name": "bad", "url": "https://example.com\\@127.0.0.1/hook"}
    )
    # Past the load-time check (a config built in code): delivery must still isolate it.
    deps["webhook_config"] = config.model_copy(
        update={"subscriptions": [*config.subscriptions, bad]}
    )
    event = deployment_completed()
    with pytest.raises(Reject) as info:
        await deliver(event, context(event, deps, 1, MemoryBroker(names)))
    assert info.value.reason.startswith("bad:")
    assert "ok" not in info.value.reason
    assert [e.id for e in ok.verified] == [event.id]
    record = await deps["delivery_log"].get(event.id, "bad")
    assert record is not None and record.state == "failed"


async def test_many_subscriptions_do_not_exhaust_the_redis_pool(serve, redis_url, names) -> None:
    """40 subscriptions x 16 events at once through a pool of 10 connections: every
    delivery lands and no ``MaxConnectionsError`` escapes."""
    receiver = Receiver()
    url = await serve(receiver)
    config = outbound_config(*((f"s{i}", url, ["#"]) for i in range(40)))
    pool = aioredis.ConnectionPool.from_url(redis_url, max_connections=10)
    redis = aioredis.Redis(connection_pool=pool)
    try:
        deps = webhook_deps(config, redis, names)
        deps["webhook_sender"] = WebhookSender(allowed_cidrs=config.ssrf_allowed_cidrs)
        events = [deployment_completed() for _ in range(16)]
        broker = MemoryBroker(names)
        results = await asyncio.gather(
            *(deliver(e, context(e, deps, 1, broker)) for e in events), return_exceptions=True
        )
        errors = [r for r in results if isinstance(r, BaseException)]
        report(
            "webhooks_redis_pool",
            f"subscriptions=40 concurrent_events=16 pool=10 errors={len(errors)} "
            f"delivered={len(receiver.verified)}",
        )
        assert errors == []
        assert len(receiver.verified) == 40 * 16
    finally:
        keys = [k async for k in redis.scan_iter(match=f"{names.prefix}:*")]
        if keys:
            await redis.delete(*keys)
        await redis.aclose()
