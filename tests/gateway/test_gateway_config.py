"""Configuration models, topic matching and the config file loader."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from gateway.config import ConfigError, load_config, parse_config
from schemas.gateway_config import GatewayConfig, MappingRule, topic_matches
from tests.gateway.conftest import STANDARD_SECRET, config_document


@pytest.mark.parametrize(
    ("pattern", "key", "expected"),
    [
        ("deployment.*", "deployment.requested", True),
        ("deployment.*", "deployment", False),
        ("deployment.*", "deployment.requested.extra", False),
        ("deployment.#", "deployment", True),
        ("deployment.#", "deployment.a.b", True),
        ("#", "x.y", True),
        ("*.completed", "deployment.completed", True),
        ("#.completed", "a.b.completed", True),
        ("#.completed", "completed", True),
        ("a.#.b", "a.b", True),
        ("a.#.b", "a.x.y.b", True),
        ("a.*.b", "a.b", False),
        ("security.*", "deployment.requested", False),
    ],
)
def test_topic_semantics(pattern: str, key: str, expected: bool) -> None:
    assert topic_matches(pattern, key) is expected


def test_many_hashes_stay_fast() -> None:
    # An exponential matcher would not finish this.
    assert not topic_matches(".".join(["#"] * 40) + ".z", ".".join(["a"] * 60))


def test_test_config_is_valid() -> None:
    config = GatewayConfig.model_validate(config_document())
    assert [s.name for s in config.sources] == ["ci", "github", "alerts"]
    assert config.source("github").replay_ttl == 7 * 24 * 3600
    assert config.source("ci").replay_ttl > config.source("ci").tolerance_seconds


def _with(**changes: Any) -> dict[str, Any]:
    doc = config_document()
    doc.update(changes)
    return doc


@pytest.mark.parametrize(
    ("doc", "needle"),
    [
        (_with(sources=[{"name": "x", "kind": "standard", "secret": "plain"}]), "whsec_"),
        (_with(sources=[{"name": "x", "kind": "github"}]), "secret"),
        (_with(sources=[{"name": "x", "kind": "alertmanager", "token": "t"}]), "rules"),
        (
            _with(sources=[{"name": "Bad Name", "kind": "standard", "secret": STANDARD_SECRET}]),
            "name",
        ),
        (_with(api_keys=[{"name": "k", "sha256": "abc", "scopes": ["#"]}]), "sha256"),
        (_with(api_keys=[{"name": "k", "sha256": "a" * 64, "scopes": ["a..b"]}]), "scopes"),
        (
            _with(
                subscriptions=[
                    {
                        "name": "s",
                        "url": "ftp://x.example/",
                        "patterns": ["#"],
                        "secret": STANDARD_SECRET,
                    }
                ]
            ),
            "url",
        ),
        (_with(ssrf_allowed_cidrs=["10.0.0.1/8"]), "ssrf_allowed_cidrs"),
        (
            _with(sources=[{"name": "ci", "kind": "standard", "secret": STANDARD_SECRET}] * 2),
            "duplicate",
        ),
    ],
)
def test_invalid_configs_name_the_problem(doc: dict[str, Any], needle: str) -> None:
    with pytest.raises(ValidationError) as info:
        GatewayConfig.model_validate(doc)
    assert needle in str(info.value)


def test_rule_short_forms_and_extraction() -> None:
    rule = MappingRule.model_validate(
        {
            "event": "push",
            "match": {"ref": ["refs/tags/*"], "deleted": ["false"]},
            "type": "deployment.requested",
            "data": {
                "app": "repository.name",
                "version": {"path": "x|ref", "strip_prefix": "refs/tags/"},
            },
        }
    )
    payload = {"ref": "refs/tags/v1.2", "deleted": False, "repository": {"name": "shop"}}
    assert rule.applies("push", payload)
    assert not rule.applies("release", payload)
    assert not rule.applies("push", {**payload, "ref": "refs/heads/main"})
    assert rule.build(payload) == ({"app": "shop", "version": "v1.2"}, None)


def test_load_yaml_with_env_expansion(tmp_path: Path) -> None:
    path = tmp_path / "gw.yaml"
    path.write_text(
        "sources:\n  - name: gh\n    kind: github\n    secret: ${GH_SECRET}\n"
        "    rules:\n"
        "      - {event: push, type: deployment.requested, data: {app: repository.name}}\n"
    )
    config = load_config(path, environ={"GH_SECRET": "s3cr3t"})
    assert config.sources[0].secret.get_secret_value() == "s3cr3t"
    # The secret never shows up in reprs or logs.
    assert "s3cr3t" not in repr(config)
    with pytest.raises(ConfigError, match="GH_SECRET"):
        load_config(path, environ={})


def test_load_json_and_errors(tmp_path: Path) -> None:
    path = tmp_path / "gw.json"
    path.write_text(json.dumps(config_document()))
    assert len(load_config(path).api_keys) == 2
    path.write_text("{not json")
    with pytest.raises(ConfigError, match="JSON"):
        load_config(path)
    with pytest.raises(ConfigError, match="max_body_bytes"):
        parse_config("max_body_bytes: 1\n")
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "missing.yaml")


def test_the_documented_example_config_is_valid() -> None:
    """docs/webhooks.md's example must keep working as the models evolve."""
    from gateway.app import _check_rule_types

    doc = (Path(__file__).parents[2] / "docs" / "webhooks.md").read_text()
    section = doc.split("## Configuration file", 1)[1]
    example = section.split("```yaml\n", 1)[1].split("```", 1)[0]
    env = {
        n: "whsec_" + "A" * 43 + "="
        for n in (
            "GITHUB_WEBHOOK_SECRET",
            "ALERTMANAGER_WEBHOOK_TOKEN",
            "CI_WEBHOOK_SECRET",
            "AUDIT_SINK_SECRET",
        )
    }
    config = parse_config(example, environ=env)
    _check_rule_types(config)
    assert [s.kind.value for s in config.sources] == ["github", "alertmanager", "standard"]
    assert config.matching_subscriptions("deployment.completed")[0].name == "audit-sink"


def test_standard_sources_left_open_are_warned_about(caplog) -> None:
    """A standard source without rules and without ``allowed_types`` may publish any
    type (the default ``#``): the gateway says so at start; an explicit list, even
    ``["#"]``, is the operator's choice and is not warned about."""
    from workers.cli_gateway import warn_about_open_sources

    doc = config_document()
    doc["sources"].append({**doc["sources"][0], "name": "ci-open", "allowed_types": ["#"]})
    doc["sources"].append(
        {**doc["sources"][0], "name": "ci-narrow", "allowed_types": ["image.built"]}
    )
    caplog.set_level(logging.WARNING, logger="codebus.gateway")
    assert warn_about_open_sources(GatewayConfig.model_validate(doc)) == ["ci"]
    [line] = [r.getMessage() for r in caplog.records]
    assert "'ci'" in line and "ANY event type" in line


def test_example_config_lists_allowed_types_explicitly() -> None:
    import yaml

    example = Path(__file__).resolve().parents[2] / "deploy" / "gateway.example.yaml"
    doc = yaml.safe_load(example.read_text())
    for source in doc["sources"]:
        if source["kind"] == "standard" and not source.get("rules"):
            assert source.get("allowed_types"), source["name"]
