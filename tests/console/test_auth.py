"""Units of the console's sign-in: scopes from configuration, session lifetime and bound."""

from __future__ import annotations

import pytest

from gateway.console.auth import Authenticator, SessionStore
from gateway.console.config import Scope, parse_console_config
from schemas.errors import ConfigError
from tests.console.conftest import (
    DEPLOYER_KEY,
    GATEWAY_KEYS,
    OPERATOR_TOKEN,
    READ_TOKEN,
    VIEWER_KEY,
    console_config,
)


def test_scopes_of_keys_and_tokens() -> None:
    auth = Authenticator(GATEWAY_KEYS, console_config())
    found = {
        k: auth.authenticate(k) for k in (DEPLOYER_KEY, VIEWER_KEY, OPERATOR_TOKEN, READ_TOKEN)
    }
    assert [(p.name, p.scope) for p in found.values() if p] == [
        ("deployer", Scope.OPERATOR),
        ("viewer", Scope.READ),
        ("oncall", Scope.OPERATOR),
        ("auditor", Scope.READ),
    ]
    assert auth.authenticate(DEPLOYER_KEY + "x") is None
    assert auth.authenticate("") is None


def test_a_key_scoped_none_cannot_sign_in() -> None:
    config = parse_console_config("key_scopes: {viewer: null}\n")
    assert Authenticator(GATEWAY_KEYS, config).authenticate(VIEWER_KEY) is None


def test_tokens_come_from_the_environment_and_errors_name_the_field() -> None:
    config = parse_console_config(
        "tokens: [{name: ops, token: '${T}', scope: operator}]", environ={"T": "t" * 20}
    )
    assert config.tokens[0].token.get_secret_value() == "t" * 20
    with pytest.raises(ConfigError, match="T is not set"):
        parse_console_config("tokens: [{name: ops, token: '${T}'}]", environ={})
    with pytest.raises(ConfigError, match=r"allowed_origins: .*console.example.com"):
        parse_console_config("allowed_origins: ['console.example.com']")
    with pytest.raises(ConfigError, match=r"tokens\.0\.scope"):
        parse_console_config("tokens: [{name: ops, token: '0123456789abcdef', scope: admin}]")


def test_sessions_expire_and_are_bounded() -> None:
    now = [1000.0]
    store = SessionStore(ttl=60, max_sessions=2, clock=lambda: now[0])
    principal = Authenticator(GATEWAY_KEYS, console_config()).authenticate(VIEWER_KEY)
    assert principal is not None
    first, _ = store.create(principal)
    second, session = store.create(principal)
    assert store.get(second) is session and store.get("forged") is None
    third, _ = store.create(principal)
    assert store.get(first) is None  # the oldest made room
    now[0] += 61
    assert store.get(second) is None and store.get(third) is None
    store.drop(third)
