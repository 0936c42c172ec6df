"""Errors raised when data does not match its schema.

SchemaError(ValueError)       a payload, envelope or argument set is invalid
└── UnknownEventType          no payload model is registered for an event type
ConfigError(ValueError)       settings or a configuration file are invalid
"""

from __future__ import annotations

from pydantic import ValidationError


def field_errors(exc: ValidationError, prefix: tuple[str | int, ...] = ()) -> str:
    """One line naming each failing field, ``a.b: msg; c: msg`` (``prefix`` goes in
    front of every location, e.g. the section or argument the data came from)."""
    parts = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in (*prefix, *err.get("loc", ())))
        parts.append(f"{loc}: {err.get('msg', 'invalid')}" if loc else err.get("msg", "invalid"))
    return "; ".join(parts)


class SchemaError(ValueError):
    """Data failed validation; ``fields`` names every failing field."""

    def __init__(self, message: str, *, fields: tuple[str, ...] = (), what: str = "") -> None:
        super().__init__(message)
        self.fields = fields
        self.what = what

    @classmethod
    def from_validation(cls, what: str, exc: ValidationError, prefix: str = "") -> SchemaError:
        """Build an error whose message names each failing field, e.g. ``data.version``."""
        fields: list[str] = []
        details: list[str] = []
        for err in exc.errors():
            loc = prefix + ".".join(str(p) for p in err.get("loc", ()))
            fields.append(loc or "(root)")
            details.append(f"{loc or '(root)'}: {err.get('msg', 'invalid')}")
        return cls(f"invalid {what}: " + "; ".join(details), fields=tuple(fields), what=what)


class UnknownEventType(SchemaError):
    """The event type has no registered payload model."""


class ConfigError(ValueError):
    """Configuration (``CODEBUS_*`` settings, a tools or gateway file, a unit) is invalid;
    the message names each offending variable or field. The CLI exits 3 on it."""
