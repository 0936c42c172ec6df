"""The CloudEvents envelope and the payload registry."""

from __future__ import annotations

import json

import pytest

from schemas import SchemaError, UnknownEventType, child_event_id, new_event, validate_payload
from schemas.envelope import Event
from schemas.events import EVENT_TYPES, DeploymentRequested


def test_structured_mode_round_trip_keeps_every_attribute():
    ev = new_event(
        "deployment.requested",
        {"app": "web", "version": "1.2"},
        source="ci/github",
        subject="web",
        traceparent="00-" + "a" * 32 + "-" + "b" * 16 + "-01",
    )
    doc = json.loads(ev.to_json())
    assert doc["specversion"] == "1.0" and doc["datacontenttype"] == "application/json"
    assert doc["correlationid"] == ev.id  # a new workflow is its own correlation
    assert "causationid" not in doc  # unset extensions are omitted
    assert Event.from_json(ev.to_json()) == ev


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"type": "Deployment Requested"}, "type"),
        ({"time": "2026-01-01T00:00:00"}, "time"),  # no offset
        ({"traceparent": "not-a-trace"}, "traceparent"),
        ({"id": "line\nbreak"}, "id"),
        ({"id": ""}, "id"),
        ({"specversion": "0.3"}, "specversion"),
        ({"colour": "red"}, "colour"),
    ],
)
def test_bad_envelopes_name_the_attribute(change, field):
    doc = json.loads(
        new_event("image.built", {"app": "a", "version": "1", "image_tag": "a:1"}).to_json()
    )
    doc.update(change)
    with pytest.raises(SchemaError) as err:
        Event.from_json(json.dumps(doc))
    assert field in err.value.fields


def test_payloads_are_strict_and_errors_name_data_fields():
    assert isinstance(
        validate_payload("deployment.requested", {"app": "web", "version": "1"}),
        DeploymentRequested,
    )
    with pytest.raises(SchemaError) as err:
        validate_payload("deployment.requested", {"app": "web", "version": 1, "x": 2})
    assert set(err.value.fields) == {"data.version", "data.x"}
    with pytest.raises(SchemaError, match=r"data\.app"):
        validate_payload("deployment.requested", {"app": "Web App!", "version": "1"})


def test_unknown_type_lists_the_known_ones():
    with pytest.raises(UnknownEventType) as err:
        validate_payload("deployment.exploded", {})
    assert "deployment.requested" in str(err.value)
    assert len(EVENT_TYPES) >= 10


def test_child_ids_are_deterministic_and_distinct():
    a = child_event_id("cause", "deploy.requested", "deployment.started", 0)
    assert a == child_event_id("cause", "deploy.requested", "deployment.started", 0)
    others = {
        child_event_id("cause", "deploy.requested", "deployment.started", 1),
        child_event_id("cause", "notify.compose", "deployment.started", 0),
        child_event_id("other", "deploy.requested", "deployment.started", 0),
    }
    assert a not in others and len(others) == 3
