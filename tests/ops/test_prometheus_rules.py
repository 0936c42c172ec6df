"""The shipped alert rules and dashboard: promtool checks and unit-tests the rules on
synthetic series, and every metric they query is one codebus really exports."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import yaml

from gateway.metrics import GatewayMetrics
from tests.ops.test_worker_metrics import promtool
from workers.app import make_middleware, worker_registry
from workers.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "deploy" / "prometheus" / "codebus-rules.yaml"
RULES_TEST = ROOT / "deploy" / "prometheus" / "codebus-rules.test.yaml"
DASHBOARD = ROOT / "deploy" / "grafana" / "codebus-dashboard.json"
OPERATIONS = ROOT / "docs" / "operations.md"
_METRIC = re.compile(r"\b((?:codebus|process|python)_[a-z0-9_]+)\b")
_SCRAPE_SERIES = {"up"}


def exported_series() -> set[str]:
    """Every sample name a worker or the gateway can export."""
    import fakeredis.aioredis

    registry = worker_registry()
    make_middleware(Settings(), fakeredis.aioredis.FakeRedis(), registry)  # as a worker does
    names = {s.name for family in registry.collect() for s in family.samples}
    gateway = GatewayMetrics()
    names |= {s.name for family in gateway.registry.collect() for s in family.samples}
    # Labelled families without children export no sample yet: add their names.
    for family in [*registry.collect(), *gateway.registry.collect()]:
        suffixes = {
            "counter": ("_total",),
            "histogram": ("_bucket", "_count", "_sum"),
        }.get(family.type, ("",))
        names |= {family.name + s for s in suffixes}
    return names


def rule_expressions() -> dict[str, str]:
    doc = yaml.safe_load(RULES.read_text())
    return {r["alert"]: r["expr"] for g in doc["groups"] for r in g["rules"]}


def test_promtool_checks_and_unit_tests_the_rules() -> None:
    tool = promtool()
    check = subprocess.run(
        [tool, "check", "rules", str(RULES)], capture_output=True, text=True, timeout=60
    )
    assert check.returncode == 0, check.stdout + check.stderr
    tested = subprocess.run(
        [tool, "test", "rules", RULES_TEST.name],
        cwd=RULES_TEST.parent,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert tested.returncode == 0, tested.stdout + tested.stderr


def test_every_alert_has_a_unit_test_and_a_runbook() -> None:
    alerts = set(rule_expressions())
    assert {
        "CodebusDeadLettersGrowing",
        "CodebusCircuitOpen",
        "CodebusConsumerGone",
        "CodebusInboxFailingClosed",
        "CodebusRolloutStalled",
    } <= alerts
    tests = yaml.safe_load(RULES_TEST.read_text())["tests"]
    covered = {a["alertname"] for t in tests for a in t["alert_rule_test"] if a["exp_alerts"]}
    assert covered == alerts, f"alerts never shown firing: {alerts - covered}"
    runbooks = OPERATIONS.read_text().split("\n## Alerts\n", 1)
    assert len(runbooks) == 2, "docs/operations.md has no '## Alerts' section"
    for alert in alerts:
        assert f"### {alert}" in runbooks[1], f"no runbook for {alert}"


def test_rules_and_dashboard_query_only_exported_metrics() -> None:
    exported = exported_series() | _SCRAPE_SERIES
    dashboard = json.loads(DASHBOARD.read_text())
    queries = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    queries += list(rule_expressions().values())
    used = {m for q in queries for m in _METRIC.findall(q)}
    assert used, "no metric found in the queries"
    assert used <= exported, f"queried but never exported: {sorted(used - exported)}"


def test_dashboard_covers_what_operators_asked_for() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    titles = " | ".join(p["title"].lower() for p in dashboard["panels"])
    for topic in (
        "throughput",
        "latency",
        "retries",
        "dead letters",
        "breaker",
        "tool errors",
        "rollouts in progress",
    ):
        assert topic in titles, f"dashboard lacks a {topic!r} panel"
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    variables = {v["name"] for v in dashboard["templating"]["list"]}
    for panel in dashboard["panels"]:
        if panel["type"] != "row":
            assert panel["datasource"]["uid"] == "${datasource}" and "datasource" in variables
