"""Configuration of the webhook gateway and of outbound webhook delivery.

One document (YAML or JSON, loaded by ``gateway.config.load_config``) holds:

- ``sources``: inbound webhook senders, each with a ``kind`` that fixes how requests are
  authenticated (``standard``: Standard Webhooks HMAC; ``github``: X-Hub-Signature-256;
  ``alertmanager``: bearer token) and ``rules`` mapping their payloads to event types;
- ``api_keys``: keys for ``POST /events``, stored only as SHA-256 hashes, each scoped to
  event-type patterns;
- ``subscriptions``: outbound webhooks (url, event-type patterns, signing secret);
- ``ssrf_allowed_cidrs``: address ranges outbound delivery may reach although they are
  internal (loopback, private, ...).

Patterns use RabbitMQ topic semantics (:mod:`schemas.topics`, shared with the bus).
Pure data: no I/O.
"""

from __future__ import annotations

import fnmatch
import re
from enum import StrEnum
from typing import Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    IPvAnyNetwork,
    SecretStr,
    field_validator,
    model_validator,
)

from schemas.topics import EVENT_TYPE_RE, topic_matches, validate_pattern
from schemas.webhooks import decode_secret

_NAME = r"^[a-z0-9]([a-z0-9_-]{0,61}[a-z0-9])?$"
_PATH = re.compile(r"^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$")

DEFAULT_MAX_BODY_BYTES = 1024 * 1024
#: How long an ``Idempotency-Key`` of ``POST /events`` is remembered.
DEFAULT_IDEMPOTENCY_TTL = 24 * 3600
#: Without a timestamp in GitHub's scheme, the replay window is how long ids are kept.
DEFAULT_GITHUB_REPLAY_TTL = 7 * 24 * 3600


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class FieldSource(_Strict):
    """Where one event field comes from in the incoming payload.

    ``path`` is dotted (``repository.name``); alternatives separated by ``|`` are tried in
    order and the first present, non-empty value wins (``workflow_run.head_sha|after``).
    ``strip_prefix`` removes a prefix such as ``refs/tags/`` from a string value.
    """

    path: str = Field(min_length=1)
    strip_prefix: str | None = None

    @field_validator("path")
    @classmethod
    def _paths(cls, value: str) -> str:
        for alt in value.split("|"):
            if not _PATH.match(alt):
                raise ValueError(f"{alt!r} is not a dotted path such as 'repository.name'")
        return value


class MappingRule(_Strict):
    """Turns a matching payload into an event of ``type``.

    ``event`` selects the kind-specific event name: GitHub's ``X-GitHub-Event`` (``push``),
    the Alertmanager alert status (``firing``/``resolved``) or, for ``standard`` sources,
    the body's ``type`` field. ``match`` maps dotted paths to glob patterns that must all
    match (``ref: ["refs/tags/v*"]``). ``data`` fills payload fields from the body;
    ``static`` adds constant fields (``data`` wins on conflicts).
    """

    event: str | None = None
    match: dict[str, list[str]] = Field(default_factory=dict)
    type: str
    data: dict[str, FieldSource] = Field(default_factory=dict)
    static: dict[str, Any] = Field(default_factory=dict)
    subject: FieldSource | None = None

    @field_validator("type")
    @classmethod
    def _type(cls, value: str) -> str:
        if not EVENT_TYPE_RE.match(value):
            raise ValueError("must be a dotted event type such as 'deployment.requested'")
        return value

    @field_validator("data", "subject", mode="before")
    @classmethod
    def _short_form(cls, value: Any) -> Any:
        # Let configs write ``app: repository.name`` instead of ``app: {path: ...}``.
        if isinstance(value, str):
            return {"path": value}
        if isinstance(value, dict):
            return {k: {"path": v} if isinstance(v, str) else v for k, v in value.items()}
        return value

    @field_validator("match")
    @classmethod
    def _match_paths(cls, value: dict[str, list[str]]) -> dict[str, list[str]]:
        for path in value:
            if not _PATH.match(path):
                raise ValueError(f"{path!r} is not a dotted path")
        return value

    def applies(self, event: str | None, payload: dict[str, Any]) -> bool:
        """Whether this rule matches the event name ``event`` and ``payload``."""
        if self.event is not None and self.event != event:
            return False
        for path, globs in self.match.items():
            value = lookup(payload, path)
            if value is None or isinstance(value, dict | list):
                return False
            text = str(value).lower() if isinstance(value, bool) else str(value)
            if not any(fnmatch.fnmatchcase(text, g) for g in globs):
                return False
        return True

    def build(self, payload: dict[str, Any]) -> tuple[dict[str, Any], str | None]:
        """The event ``data`` and ``subject`` this rule produces from ``payload``."""
        data: dict[str, Any] = dict(self.static)
        for field_name, source in self.data.items():
            value = extract(payload, source)
            if value is not None:
                data[field_name] = value
        subject = extract(payload, self.subject) if self.subject else None
        return data, None if subject is None else str(subject)


def lookup(payload: Any, path: str) -> Any:
    """The value at dotted ``path`` in nested dicts, or None when absent."""
    node = payload
    for part in path.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def extract(payload: dict[str, Any], source: FieldSource) -> Any:
    """The first present, non-empty alternative of ``source`` (prefix stripped)."""
    for alt in source.path.split("|"):
        value = lookup(payload, alt)
        if value is None or value == "":
            continue
        if source.strip_prefix and isinstance(value, str) and value.startswith(source.strip_prefix):
            value = value[len(source.strip_prefix) :]
        return value
    return None


class SourceKind(StrEnum):
    """How a source authenticates and what its payload looks like."""

    STANDARD = "standard"
    GITHUB = "github"
    ALERTMANAGER = "alertmanager"


class Source(_Strict):
    """One inbound webhook sender, reached at ``POST /webhooks/{name}``."""

    name: str = Field(pattern=_NAME)
    kind: SourceKind
    secret: SecretStr | None = Field(default=None, description="standard: whsec_...; github")
    token: SecretStr | None = Field(default=None, description="alertmanager bearer token")
    rules: list[MappingRule] = Field(default_factory=list)
    allowed_types: list[str] = Field(
        default_factory=lambda: ["#"],
        description="standard sources without rules: event-type patterns the body may use",
    )
    tolerance_seconds: int = Field(default=300, ge=1, le=3600)
    replay_ttl_seconds: int | None = Field(default=None, ge=1)

    @field_validator("allowed_types")
    @classmethod
    def _patterns(cls, value: list[str]) -> list[str]:
        return [validate_pattern(p) for p in value]

    @model_validator(mode="after")
    def _credentials(self) -> Source:
        if self.kind is SourceKind.ALERTMANAGER:
            if self.token is None or not self.token.get_secret_value():
                raise ValueError("alertmanager sources need a 'token'")
            if not self.rules:
                raise ValueError("alertmanager sources need 'rules' (event: firing / resolved)")
        else:
            if self.secret is None or not self.secret.get_secret_value():
                raise ValueError(f"{self.kind.value} sources need a 'secret'")
            if self.kind is SourceKind.STANDARD:
                decode_secret(self.secret.get_secret_value())
            if self.kind is SourceKind.GITHUB and not self.rules:
                raise ValueError("github sources need 'rules'")
        return self

    @property
    def replay_ttl(self) -> int:
        """Seconds a seen webhook id is remembered; always longer than the tolerance."""
        if self.replay_ttl_seconds is not None:
            return max(self.replay_ttl_seconds, 2 * self.tolerance_seconds + 60)
        if self.kind is SourceKind.GITHUB:
            return DEFAULT_GITHUB_REPLAY_TTL
        return 2 * self.tolerance_seconds + 60


class ApiKey(_Strict):
    """A key for ``POST /events``: stored as its SHA-256 hex, scoped to type patterns.

    ``apps`` / ``environments`` (glob patterns, e.g. ``shop-*``) further limit what the
    key may ask of deployment events (``deployment.*``): the event's ``data.app`` /
    ``data.environment`` (after defaults) must match one of them. Unset: no limit.
    """

    name: str = Field(pattern=_NAME)
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    scopes: list[str] = Field(min_length=1)
    apps: list[str] | None = Field(default=None, min_length=1)
    environments: list[str] | None = Field(default=None, min_length=1)

    @field_validator("scopes")
    @classmethod
    def _patterns(cls, value: list[str]) -> list[str]:
        return [validate_pattern(p) for p in value]

    @field_validator("apps", "environments")
    @classmethod
    def _globs(cls, value: list[str] | None) -> list[str] | None:
        if value is not None and not all(p and p.strip() == p for p in value):
            raise ValueError("patterns must be non-empty, without surrounding spaces")
        return value

    def allows(self, event_type: str) -> bool:
        """Whether this key may publish ``event_type``."""
        return any(topic_matches(p, event_type) for p in self.scopes)


class OutboundSubscription(_Strict):
    """An external URL that receives signed Standard Webhooks for matching events."""

    name: str = Field(pattern=_NAME)
    url: str = Field(min_length=8, max_length=2000)
    patterns: list[str] = Field(min_length=1)
    secret: SecretStr
    timeout_seconds: float = Field(default=10.0, gt=0, le=120)
    enabled: bool = True

    @field_validator("url")
    @classmethod
    def _scheme(cls, value: str) -> str:
        if not value.lower().startswith(("http://", "https://")):
            raise ValueError("only http:// and https:// URLs can receive webhooks")
        return value

    @field_validator("patterns")
    @classmethod
    def _patterns(cls, value: list[str]) -> list[str]:
        return [validate_pattern(p) for p in value]

    @field_validator("secret")
    @classmethod
    def _secret(cls, value: SecretStr) -> SecretStr:
        decode_secret(value.get_secret_value())
        return value

    def wants(self, event_type: str) -> bool:
        """Whether an event of ``event_type`` goes to this subscription."""
        return self.enabled and any(topic_matches(p, event_type) for p in self.patterns)


class ServerLimits(_Strict):
    """How the gateway treats connections (``server:`` in the document).

    ``max_connections``: connections served at once; beyond it new clients wait in the
    listen backlog (``backlog`` deep) until one closes. Keep it well under the process's
    file-descriptor limit (``ulimit -n``). ``idle_timeout_seconds``: a connection that
    has not completed a request's headers this long after opening (or after its last
    response) is closed: idle keep-alive and slowly trickled headers alike.
    ``body_timeout_seconds``: reading one request body may take at most this long (408).
    """

    max_connections: int = Field(default=512, ge=1, le=65536)
    backlog: int = Field(default=128, ge=1, le=65535)
    idle_timeout_seconds: float = Field(default=15.0, gt=0, le=3600)
    body_timeout_seconds: float = Field(default=30.0, gt=0, le=3600)


class GatewayConfig(_Strict):
    """The whole gateway / outbound-webhook configuration document."""

    sources: list[Source] = Field(default_factory=list)
    api_keys: list[ApiKey] = Field(default_factory=list)
    subscriptions: list[OutboundSubscription] = Field(default_factory=list)
    ssrf_allowed_cidrs: list[IPvAnyNetwork] = Field(default_factory=list)
    max_body_bytes: int = Field(default=DEFAULT_MAX_BODY_BYTES, ge=1024, le=64 * 1024 * 1024)
    server: ServerLimits = Field(default_factory=ServerLimits)
    idempotency_ttl_seconds: int = Field(
        default=DEFAULT_IDEMPOTENCY_TTL,
        ge=60,
        description="how long POST /events remembers an Idempotency-Key",
    )

    @model_validator(mode="after")
    def _unique_names(self) -> GatewayConfig:
        for what, items in (
            ("sources", self.sources),
            ("api_keys", self.api_keys),
            ("subscriptions", self.subscriptions),
        ):
            names = [i.name for i in items]
            dupes = sorted({n for n in names if names.count(n) > 1})
            if dupes:
                raise ValueError(f"{what}: duplicate names {dupes}")
        return self

    def source(self, name: str) -> Source | None:
        """The source called ``name``, if configured."""
        return next((s for s in self.sources if s.name == name), None)

    def matching_subscriptions(self, event_type: str) -> list[OutboundSubscription]:
        """Enabled subscriptions whose patterns match ``event_type``, in config order."""
        return [s for s in self.subscriptions if s.wants(event_type)]
