"""Topic matching for the bus: re-exported from :mod:`schemas.topics`, the one
implementation the bus, the gateway configuration and the CLI share."""

from __future__ import annotations

from schemas.topics import topic_matches, validate_pattern

__all__ = ["topic_matches", "validate_pattern"]
