"""The console in a real browser: Debian's chromium driven by Playwright, against the
live RabbitMQ and Redis. Screenshots go to ``var/artifacts/console/`` (git-ignored); the
directory and the measured latency are printed at the end of the test run.

Playwright's own browser download is never used (``playwright install`` is not run):
the tests launch ``/usr/bin/chromium`` (``scripts/services.sh install``).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from bus import deadletters
from flows.store import FlowStore
from schemas.envelope import Event, new_event
from tests import reports
from tests.conftest import IN_CI
from tests.console.conftest import OPERATOR_TOKEN, SECRET, VIEWER_KEY, Console
from tests.flows.helpers import new_state
from tools.guards.breaker import BreakerStore

pytestmark = pytest.mark.timeout(90)

CHROMIUM = os.environ.get("CODEBUS_TEST_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ARTIFACTS = Path(__file__).resolve().parents[2] / "var" / "artifacts" / "console"


@pytest.fixture
async def page(console: Console) -> AsyncIterator[Any]:
    """A fresh browser page; fails in CI when chromium or Playwright is missing."""
    try:
        from playwright.async_api import async_playwright
    except ImportError:
        msg = "playwright is not installed (pip install playwright; test extras)"
        pytest.fail(msg) if IN_CI else pytest.skip(msg)
    if not os.access(CHROMIUM, os.X_OK):
        msg = f"{CHROMIUM} missing: scripts/services.sh install (Debian chromium)"
        pytest.fail(msg) if IN_CI else pytest.skip(msg)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    reports.report("console browser screenshots", f"saved under {ARTIFACTS}")
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        context = await browser.new_context(base_url=console.url)
        tab = await context.new_page()
        problems: list[str] = []
        # A CSP violation (inline script, eval) or a script error shows up here.
        tab.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
        tab.on("pageerror", lambda e: problems.append(str(e)))
        tab.problems = problems
        try:
            yield tab
        finally:
            await browser.close()


async def sign_in(page: Any, key: str) -> None:
    """Sign in through the login form."""
    await page.goto("/")
    await page.fill("#key", key)
    await page.click("#login-form button[type=submit]")
    await page.wait_for_selector("#app:not(.hidden)")


def _no_script_errors(page: Any) -> None:
    # 401 answers the page expects (signed-out session check) are logged as errors
    # by chromium as "Failed to load resource"; anything else is a bug or a CSP hit.
    real = [p for p in page.problems if "Failed to load resource" not in p]
    assert real == []


async def test_live_stream_shows_a_published_event_within_a_second(
    console: Console, page: Any
) -> None:
    await sign_in(page, OPERATOR_TOKEN)
    await page.wait_for_selector("#stream-status.live", timeout=5000)
    event = new_event(
        "notification.requested",
        {"channel": "#ops", "title": "console test", "details": {"password": SECRET}},
        source="tests",
    )
    started = time.perf_counter()
    await console.broker.publish(event)
    await page.wait_for_selector(f'#events li[data-id="{event.id}"]', timeout=1000)
    shown_ms = (time.perf_counter() - started) * 1000
    text = await page.inner_text(f'#events li[data-id="{event.id}"]')
    assert "notification.requested" in text and "console test" in text
    assert SECRET not in await page.content()
    # The type filter: an event the filter leaves out never reaches the page (a
    # catch-all queue keeps it routable once the page's tap no longer binds it).
    await console.broker.declare_queue(console.names.subscription_queue("console.all"), ["#"])
    await page.fill("#filter-types", "deployment.*")
    await page.click("#stream-form button[type=submit]")
    await page.wait_for_selector("#stream-status.live", timeout=5000)
    skipped = new_event("notification.requested", {"channel": "#x", "title": "no"}, source="t")
    shown = new_event("deployment.requested", {"app": "web", "version": "9"}, source="t")
    await console.broker.publish(skipped)
    await console.broker.publish(shown)
    await page.wait_for_selector(f'#events li[data-id="{shown.id}"]', timeout=1000)
    assert await page.query_selector(f'#events li[data-id="{skipped.id}"]') is None
    await page.screenshot(path=str(ARTIFACTS / "events.png"), full_page=True)
    reports.report(
        "console live stream", f"published event shown in the page after {shown_ms:.0f} ms"
    )
    _no_script_errors(page)


async def test_a_dead_letter_is_replayed_from_the_page(console: Console, page: Any) -> None:
    letter = await console.add_dead_letter()
    await sign_in(page, OPERATOR_TOKEN)
    await page.click('.tab[data-tab="deadletters"]')
    row = f'#dlq-table tr[data-id="{letter}"]'
    await page.wait_for_selector(row)
    assert "rejected" in await page.inner_text(row)
    await page.click(f"{row} button.show")
    await page.wait_for_selector("#dlq-detail:not(.hidden)")
    assert letter in await page.inner_text("#dlq-detail")
    assert SECRET not in await page.content()
    await page.screenshot(path=str(ARTIFACTS / "dead-letters.png"), full_page=True)
    await page.click(f"{row} button.replay")
    await page.wait_for_selector("#message.info")
    assert f"replayed {letter}" in await page.inner_text("#message")
    await page.wait_for_selector(row, state="detached")
    delivery = await console.broker.get(console.origin_queue)
    assert delivery is not None and Event.from_json(delivery.message.body).id == letter
    await delivery.ack()
    assert await deadletters.list_dead_letters(console.broker, 10) == []
    await page.screenshot(path=str(ARTIFACTS / "dead-letter-replayed.png"), full_page=True)
    _no_script_errors(page)


async def test_purge_needs_the_typed_confirmation(console: Console, page: Any) -> None:
    letter = await console.add_dead_letter()
    await sign_in(page, OPERATOR_TOKEN)
    await page.click('.tab[data-tab="deadletters"]')
    await page.wait_for_selector(f'#dlq-table tr[data-id="{letter}"]')
    page.once("dialog", lambda d: d.accept("yes"))  # not the word asked for
    await page.click("#dlq-purge")
    await page.wait_for_selector("#message:not(.hidden):not(.info)")
    assert "confirm" in await page.inner_text("#message")
    assert len(await deadletters.list_dead_letters(console.broker, 10)) == 1
    page.once("dialog", lambda d: d.accept("purge"))
    await page.click("#dlq-purge")
    await page.wait_for_selector("#message.info")
    assert "purged 1" in await page.inner_text("#message")
    assert await deadletters.list_dead_letters(console.broker, 10) == []


async def test_unauthenticated_requests_are_refused(console: Console, page: Any) -> None:
    await page.goto("/")
    await page.wait_for_selector("#login:not(.hidden)")
    assert await page.is_hidden("#app")
    answer = await page.request.get("/api/dead-letters")
    assert answer.status == 401
    answer = await page.request.get("/api/events/stream")
    assert answer.status == 401
    await page.fill("#key", "not-a-key")
    await page.click("#login-form button[type=submit]")
    await page.wait_for_selector("#message:not(.hidden)")
    assert "401" in await page.inner_text("#message")
    await page.screenshot(path=str(ARTIFACTS / "login-refused.png"), full_page=True)


async def test_state_change_without_csrf_token_is_refused(console: Console, page: Any) -> None:
    letter = await console.add_dead_letter()
    await sign_in(page, OPERATOR_TOKEN)
    # The signed-in browser sends its cookie, but not the session's CSRF token.
    status = await page.evaluate(
        """async (id) => (await fetch('/api/dead-letters/' + id + '/replay',
               {method: 'POST', credentials: 'same-origin'})).status""",
        letter,
    )
    assert status == 403
    # A page elsewhere cannot pass the Origin check even with a stolen token.
    csrf = await page.evaluate("async () => (await (await fetch('/api/session')).json()).csrf")
    answer = await page.request.post(
        f"/api/dead-letters/{letter}/replay",
        headers={"X-CSRF-Token": csrf, "Origin": "http://evil.example"},
    )
    assert answer.status == 403
    assert [i.message_id for i in await deadletters.list_dead_letters(console.broker, 10)] == [
        letter
    ]


async def test_operator_action_is_refused_for_a_read_only_key(console: Console, page: Any) -> None:
    letter = await console.add_dead_letter()
    await sign_in(page, VIEWER_KEY)
    assert "viewer (read)" in await page.inner_text("#who")
    await page.click('.tab[data-tab="deadletters"]')
    row = f'#dlq-table tr[data-id="{letter}"]'
    await page.wait_for_selector(row)
    assert await page.is_hidden(f"{row} button.replay")  # the page offers no operator action
    await page.screenshot(path=str(ARTIFACTS / "read-only.png"), full_page=True)
    # ... and the server refuses it anyway, CSRF token and Origin included.
    answer = await page.evaluate(
        """async (id) => {
             const s = await (await fetch('/api/session')).json();
             const r = await fetch('/api/dead-letters/' + id + '/replay', {method: 'POST',
               headers: {'X-CSRF-Token': s.csrf, 'Content-Type': 'application/json'},
               body: '{}'});
             return [r.status, (await r.json()).field];
           }""",
        letter,
    )
    assert answer == [403, "scope"]
    assert [i.message_id for i in await deadletters.list_dead_letters(console.broker, 10)] == [
        letter
    ]


async def test_rollout_buttons_publish_the_command_events(console: Console, page: Any) -> None:
    flow = new_state("canary", id="d-console-ui", app="shop")
    assert await FlowStore(console.redis, console.names).create(flow)
    queue = console.names.subscription_queue("console.commands")
    await console.broker.declare_queue(queue, ["deployment.*"])
    await sign_in(page, OPERATOR_TOKEN)
    await page.click('.tab[data-tab="rollouts"]')
    row = '#rollouts-table tr[data-id="d-console-ui"]'
    await page.wait_for_selector(row)
    assert await page.inner_text(f"{row} td.phase") == "pending"
    await page.screenshot(path=str(ARTIFACTS / "rollouts.png"), full_page=True)
    await page.click(f"{row} button.promote")
    await page.wait_for_selector("#message.info")
    page.once("dialog", lambda d: d.accept("bad canary"))
    await page.click(f"{row} button.abort")
    # (not wait_for_function: the console's CSP forbids the eval it relies on)
    await page.wait_for_selector('#message.info:has-text("abort_requested")')
    got = []
    for _ in range(2):
        d = await console.broker.get(queue)
        assert d is not None
        got.append(Event.from_json(d.message.body))
        await d.ack()
    assert [(e.type, e.data["flow_id"], e.data["by"]) for e in got] == [
        ("deployment.promote_requested", "d-console-ui", "console:oncall"),
        ("deployment.abort_requested", "d-console-ui", "console:oncall"),
    ]
    assert got[1].data["reason"] == "bad canary"
    _no_script_errors(page)


async def test_correlation_view_shows_the_tree(console: Console, page: Any) -> None:
    root = new_event("deployment.requested", {"app": "web", "version": "1"}, source="t")
    child = new_event(
        "deployment.started",
        {"app": "web", "version": "1", "environment": "staging"},
        source="t",
        correlationid=root.correlationid,
        causationid=root.id,
    )
    for e in (root, child):
        fields = {
            "id": e.id,
            "type": e.type,
            "source": e.source,
            "time": e.time.isoformat(),
            "correlationid": e.correlationid or "",
            "causationid": e.causationid or "",
            "event": e.to_json(),
        }
        await console.redis.xadd(console.names.event_log_stream, fields)
    record = {
        "tool": "kubernetes.kubectl_apply",
        "outcome": "ok",
        "duration_ms": 8.0,
        "event_id": child.id,
    }
    await console.redis.xadd(console.names.audit_stream, {"record": json.dumps(record)})
    await sign_in(page, OPERATOR_TOKEN)
    await page.click('.tab[data-tab="correlation"]')
    await page.fill("#correlation-id", root.correlationid or "")
    await page.click("#correlation-form button[type=submit]")
    await page.wait_for_selector("#correlation-tree li")
    tree = await page.inner_text("#correlation-tree")
    assert tree.index("deployment.requested") < tree.index("deployment.started")
    assert "tool kubernetes.kubectl_apply: ok" in tree
    nested = await page.query_selector("#correlation-tree > ul > li > ul > li")
    assert nested is not None and "deployment.started" in await nested.inner_text()
    await page.screenshot(path=str(ARTIFACTS / "correlation.png"), full_page=True)


async def test_an_open_breaker_is_reset_from_the_page(console: Console, page: Any) -> None:
    store = BreakerStore(console.redis, console.names)
    admission = await store.acquire("docker", 5.0)
    await store.failure("docker", admission, threshold=1, reset_timeout=60.0)
    await sign_in(page, OPERATOR_TOKEN)
    await page.click('.tab[data-tab="breakers"]')
    row = '#breakers-table tr[data-server="docker"]'
    await page.wait_for_selector(row)
    assert await page.inner_text(f"{row} td.state") == "open"
    await page.screenshot(path=str(ARTIFACTS / "breakers.png"), full_page=True)
    await page.click(f"{row} button.reset")
    await page.wait_for_selector(row, state="detached")
    assert await store.status_all() == []
