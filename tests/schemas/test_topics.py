"""One topic matcher and pattern validator for the bus, the gateway config and the CLI
(issue 11, item 8): they used to be two implementations that disagreed."""

from __future__ import annotations

import json

import pytest

import bus.matching
import schemas.gateway_config
from bus.router import Router
from gateway.config import ConfigError, parse_config
from schemas import topics
from tests.gateway.conftest import config_document


def test_bus_and_gateway_config_use_the_one_implementation():
    for name in ("topic_matches", "validate_pattern"):
        assert getattr(bus.matching, name) is getattr(topics, name)
        assert getattr(schemas.gateway_config, name) is getattr(topics, name)


def test_event_type_words_are_the_envelopes():
    from schemas.envelope import _TYPE_RE

    assert _TYPE_RE.pattern == topics.EVENT_TYPE_RE.pattern


@pytest.mark.parametrize(
    ("pattern", "word"),
    [
        ("Deployment.*", "Deployment"),
        ("deployment.requested-v2", "requested-v2"),
        ("deployment.2", "2"),
        ("deploy*.x", "deploy*"),
        ("a..b", ""),
        ("", ""),
    ],
)
def test_patterns_no_event_type_can_match_are_refused_everywhere(pattern, word):
    with pytest.raises(ValueError, match="topic pattern") as exc:
        topics.validate_pattern(pattern)
    assert repr(pattern) in str(exc.value)
    with pytest.raises(ValueError, match="topic pattern"):
        Router("u").subscribe(pattern, name="s")
    doc = config_document()
    doc["api_keys"][0]["scopes"] = [pattern]
    with pytest.raises(ConfigError, match="topic pattern"):
        parse_config(json.dumps(doc))


@pytest.mark.parametrize("pattern", ["#", "*", "deployment.*", "a.#.b", "change_log.recorded"])
def test_valid_patterns_pass_everywhere(pattern):
    assert topics.validate_pattern(pattern) == pattern
    Router("u").subscribe(pattern, name="s")


@pytest.mark.parametrize(
    ("pattern", "key", "expected"),
    [
        ("deployment.*", "deployment.requested", True),
        ("deployment.*", "deployment", False),
        ("deployment.#", "deployment", True),
        ("#.completed", "completed", True),
        ("a.#.b", "a.x.y.b", True),
        ("a.*.b", "a.b", False),
        ("#.#", "a", True),
        ("*.#.*", "a", False),
    ],
)
def test_matching(pattern, key, expected):
    assert topics.topic_matches(pattern, key) is expected


def test_many_hashes_stay_fast():
    assert not topics.topic_matches(".".join(["#"] * 40) + ".z", ".".join(["a"] * 60))


def test_one_config_error_class():
    import schemas.errors
    import workers.settings

    assert ConfigError is workers.settings.ConfigError is schemas.errors.ConfigError
