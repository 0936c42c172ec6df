"""Source adapters: turn a verified webhook payload into events, per source kind.

Event ids are derived deterministically from what the sender uses to identify a
delivery, so that a sender's retry or redelivery republishes the *same* id and the
subscribers' idempotency inboxes drop the duplicate:

- standard: the ``webhook-id`` header;
- github: the ``X-GitHub-Delivery`` header (kept across "Redeliver" in GitHub's UI);
- alertmanager: each alert's ``fingerprint`` + ``startsAt`` + ``status``.

The derivation is keyed with the source's own secret (:func:`gateway.ids.keyed_id`), so
nobody without that secret can compute a future event id and pre-claim it.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from gateway.ids import keyed_id
from gateway.problems import GatewayError, malformed
from schemas.envelope import Event, new_event
from schemas.errors import SchemaError
from schemas.events import validate_payload
from schemas.gateway_config import MappingRule, Source, topic_matches


def source_credential(source: Source) -> str:
    """The secret that authenticates ``source`` (signing secret or bearer token)."""
    credential = source.secret if source.secret is not None else source.token
    assert credential is not None  # guaranteed by the Source model
    return credential.get_secret_value()


def derived_id(source: Source, *parts: str) -> str:
    """The deterministic event id for one delivery of ``source``, keyed by its secret."""
    return keyed_id(source_credential(source), "webhook", source.kind.value, source.name, *parts)


def event_source(source: Source) -> str:
    """The CloudEvents ``source`` attribute of events from a webhook source."""
    return f"codebus/gateway/webhooks/{source.name}"


def build_event(
    type: str,
    data: dict[str, Any],
    *,
    source: str,
    id: str | None = None,
    subject: str | None = None,
    correlationid: str | None = None,
) -> Event:
    """A validated event; payload or envelope errors become a 400 naming the field."""
    try:
        payload = validate_payload(type, data)
        return new_event(
            type,
            payload.model_dump(mode="json", exclude_none=True),
            source=source,
            id=id,
            subject=subject,
            correlationid=correlationid,
        )
    except SchemaError as exc:
        raise malformed(str(exc), exc.fields) from exc


def _first_rule(source: Source, on: str | None, payload: dict[str, Any]) -> MappingRule | None:
    return next((r for r in source.rules if r.applies(on, payload)), None)


def standard_events(source: Source, body: Any, webhook_id: str) -> list[Event]:
    """Events of a Standard Webhooks source.

    With ``rules``, the first rule whose ``event`` equals the body's ``type`` (and whose
    ``match`` holds) maps the body. Without rules the body must be an event itself:
    ``{"type", "data", "subject"?}``, its type within the source's ``allowed_types``.
    """
    if not isinstance(body, dict):
        raise malformed("body must be a JSON object", ["(body)"])
    event_id = derived_id(source, webhook_id)
    if source.rules:
        on = body.get("type") if isinstance(body.get("type"), str) else None
        rule = _first_rule(source, on, body)
        if rule is None:
            return []
        data, subject = rule.build(body)
        return [
            build_event(rule.type, data, source=event_source(source), id=event_id, subject=subject)
        ]
    try:
        direct = _DirectBody.model_validate(body)
    except ValidationError as exc:
        err = SchemaError.from_validation("webhook body", exc)
        raise malformed(str(err), err.fields) from exc
    if not any(topic_matches(p, direct.type) for p in source.allowed_types):
        raise GatewayError(
            403,
            "forbidden",
            f"source {source.name!r} may not publish {direct.type!r}",
            fields=["type"],
        )
    return [
        build_event(
            direct.type,
            direct.data,
            source=event_source(source),
            id=event_id,
            subject=direct.subject,
        )
    ]


class _DirectBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: str = Field(min_length=1, max_length=200)
    data: dict[str, Any]
    subject: str | None = Field(default=None, max_length=500)


def github_events(source: Source, event_name: str, delivery_id: str, payload: Any) -> list[Event]:
    """Events of a GitHub delivery: the first rule with ``event == X-GitHub-Event`` whose
    ``match`` holds (``ping`` and unmatched events yield none)."""
    if not isinstance(payload, dict):
        raise malformed("body must be a JSON object", ["(body)"])
    rule = _first_rule(source, event_name, payload)
    if rule is None:
        return []
    data, subject = rule.build(payload)
    return [
        build_event(
            rule.type,
            data,
            source=event_source(source),
            id=derived_id(source, delivery_id),
            subject=subject,
        )
    ]


class _Alert(BaseModel):
    """One alert of an Alertmanager v4 webhook (unknown fields are kept, not refused)."""

    model_config = ConfigDict(extra="allow")

    status: str = Field(pattern=r"^(firing|resolved)$")
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)
    startsAt: str = Field(min_length=1)
    endsAt: str | None = None
    generatorURL: str | None = None
    fingerprint: str = Field(min_length=1, max_length=200)


class _AlertmanagerBody(BaseModel):
    model_config = ConfigDict(extra="allow")

    version: str = "4"
    status: str | None = None
    receiver: str | None = None
    groupKey: str | None = None
    groupLabels: dict[str, str] = Field(default_factory=dict)
    commonLabels: dict[str, str] = Field(default_factory=dict)
    commonAnnotations: dict[str, str] = Field(default_factory=dict)
    externalURL: str | None = None
    alerts: list[_Alert] = Field(max_length=1000)


def alertmanager_events(source: Source, payload: Any) -> list[Event]:
    """One event per alert whose status has a rule; rules see the alert's fields plus
    ``group`` (receiver, groupLabels, commonLabels, commonAnnotations, externalURL)."""
    try:
        body = _AlertmanagerBody.model_validate(payload)
    except ValidationError as exc:
        err = SchemaError.from_validation("alertmanager webhook", exc)
        raise malformed(str(err), err.fields) from exc
    if body.version != "4":
        raise malformed(f"unsupported alertmanager webhook version {body.version!r}", ["version"])
    group = body.model_dump(exclude={"alerts"})
    events: list[Event] = []
    for alert in body.alerts:
        context = {**alert.model_dump(), "group": group}
        rule = _first_rule(source, alert.status, context)
        if rule is None:
            continue
        data, subject = rule.build(context)
        event_id = derived_id(source, alert.fingerprint, alert.startsAt, alert.status)
        events.append(
            build_event(rule.type, data, source=event_source(source), id=event_id, subject=subject)
        )
    return events
