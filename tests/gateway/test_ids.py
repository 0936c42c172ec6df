"""Keyed ids: deterministic per credential and parts, disjoint across credentials and
scopes, UUID-shaped (version 8) so they fit every place an event id goes."""

from __future__ import annotations

import uuid

from gateway.ids import fingerprint, keyed_id


def test_keyed_ids_are_deterministic_and_uuid_shaped() -> None:
    a = keyed_id("secret", "api", "ops", "k1")
    assert a == keyed_id("secret", "api", "ops", "k1")
    parsed = uuid.UUID(a)
    assert parsed.version == 8 and parsed.variant == uuid.RFC_4122


def test_credential_scope_and_parts_all_change_the_id() -> None:
    base = keyed_id("secret", "api", "ops", "k1")
    others = {
        keyed_id("other", "api", "ops", "k1"),
        keyed_id("secret", "correlation", "ops", "k1"),
        keyed_id("secret", "api", "deployer", "k1"),
        keyed_id("secret", "api", "ops", "k2"),
        # The separator keeps ("ab", "c") and ("a", "bc") apart.
        keyed_id("secret", "api", "op", "sk1"),
    }
    assert base not in others and len(others) == 5


def test_fingerprint_is_length_prefixed() -> None:
    assert fingerprint("ab", "c") != fingerprint("a", "bc")
    assert fingerprint(b"x") == fingerprint("x")
