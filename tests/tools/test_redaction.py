"""Secret redaction: examples and hypothesis properties."""

from __future__ import annotations

import json
import string

from hypothesis import given, settings
from hypothesis import strategies as st

from tools.redaction import REDACTED, is_secret_key, redact, redact_text


def test_keys_that_name_secrets_are_redacted_case_insensitively_and_nested() -> None:
    data = {
        "Password": "a",
        "db_passwd": "b",
        "clientSecret": "c",
        "X-Auth-Token": "d",
        "API_KEY": "e",
        "apikey": "f",
        "aws_access_key_id": "g",
        "secret_key": "h",
        "Authorization": "i",
        "private_key": {"pem": "j"},
        "azure_pat": "k",
        "slack_webhook_url": "l",
        "items": [{"token": "m"}, {"name": "ok"}],
        # Look-alikes that are not secrets stay.
        "path": "/srv",
        "pattern": "*.py",
        "key": "audit/2024.jsonl",
        "tokenizer": "bpe",
    }
    out = redact(data)
    for key in data:
        if key in {"path", "pattern", "key", "tokenizer", "items"}:
            continue
        assert out[key] == REDACTED, key
    assert out["items"] == [{"token": REDACTED}, {"name": "ok"}]
    assert (out["path"], out["pattern"], out["key"], out["tokenizer"]) == (
        "/srv",
        "*.py",
        "audit/2024.jsonl",
        "bpe",
    )
    assert data["Password"] == "a"  # the input is not modified


def test_value_patterns() -> None:
    cases = {
        "Authorization: Bearer abc.def-ghi": "abc.def-ghi",
        "curl -H 'authorization: bearer Zm9vYmFy'": "Zm9vYmFy",
        "slack xoxb-1234-5678-AbCdEf failed": "xoxb-1234-5678-AbCdEf",
        "user xoxp-99-88-77 and app xapp-1-A0-123": "xoxp-99-88-77",
        "key AKIAIOSFODNN7EXAMPLE secret wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY": (
            "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
        ),
        "temp ASIAXXXXXXXXXXXXXXXX": "ASIAXXXXXXXXXXXXXXXX",
        "git clone https://ghp_A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7r8@github.com/x": "ghp_A1b2",
        "pat github_pat_11ABCDEFG_xyz123": "github_pat_11ABCDEFG",
        "postgres://app:s3cr3t-P4ss@db:5432/app": "s3cr3t-P4ss",
        "jwt eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJl": "eyJzdWIiOiIxIn0",
        "login failed: password=hunter2&user=bob": "hunter2",
        '{"password": "hunter2"}': "hunter2",
    }
    for text, secret in cases.items():
        assert secret not in redact_text(text), text
    assert redact_text("postgres://app:pw@db/x") == "postgres://app:***@db/x"
    assert redact_text("https://example.com:8443/path?q=1") == "https://example.com:8443/path?q=1"
    assert redact_text("login failed: password=hunter2&user=bob") == (
        "login failed: password=***&user=bob"
    )


def test_argv_flags_hide_the_next_element() -> None:
    argv = ["docker", "login", "-p", "hunter2", "--username", "bob", "--token", "t0k"]
    assert redact(argv) == ["docker", "login", "-p", "***", "--username", "bob", "--token", "***"]


def test_aws_secret_in_a_sibling_field_is_redacted() -> None:
    creds = {"id": "AKIAIOSFODNN7EXAMPLE", "s": "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"}
    out = redact(creds)
    assert "EXAMPLEKEY" not in json.dumps(out)
    assert "AKIAIOSFODNN7EXAMPLE" not in json.dumps(out)


# --- properties --------------------------------------------------------------------

# Filler never contains upper-case letters or digits, secret bodies always do, so a
# secret cannot appear in the output by coincidence.
FILLER = st.text(alphabet=string.ascii_lowercase + " .,:;/-_", max_size=12)
BODY = st.text(alphabet=string.ascii_uppercase + string.digits, min_size=20, max_size=30)
PLAIN_KEYS = st.sampled_from(["name", "image", "path", "namespace", "replicas", "labels"])
SECRET_KEYS = st.sampled_from(
    ["password", "api_key", "token", "client_secret", "webhook_url", "pat", "apiKey", "passwd"]
).flatmap(
    lambda k: st.builds(
        lambda flips, prefix: (
            prefix
            + "".join(
                c.upper() if f else c for c, f in zip(k, flips + [False] * len(k), strict=False)
            )
        ),
        st.lists(st.booleans(), max_size=len(k)),
        st.sampled_from(["", "db_", "x-", "my_"]),
    )
)


@st.composite
def planted(draw) -> tuple[str, str]:
    """(text containing a secret, the secret part that must disappear)."""
    body = draw(BODY)
    kind = draw(st.integers(0, 8))
    if kind == 0:
        return f"Bearer {body}", body
    if kind == 1:
        return f"xoxb-{body}", body
    if kind == 2:
        return f"xapp-1-{body}", body
    if kind == 3:
        return f"AKIA{body[:16]} {body}{body}"[:61], body[:16]
    if kind == 4:
        return f"ghp_{body}", body
    if kind == 5:
        return f"github_pat_{body}", body
    if kind == 6:
        return f"https://user:{body}@host/x", body
    if kind == 7:
        return f"eyJ{body}.eyJ{body}.{body}", body
    return f"password={body}", body


JSON_LEAF = st.one_of(FILLER, st.integers(), st.booleans(), st.none())
STRUCTURE = st.recursive(
    JSON_LEAF,
    lambda children: st.one_of(
        st.lists(children, max_size=4), st.dictionaries(PLAIN_KEYS, children, max_size=4)
    ),
    max_leaves=12,
)


@st.composite
def structure_with_secret(draw):
    """A JSON-like structure with a secret planted in a string or under a secret key."""
    secret_text, secret = draw(planted())
    before, after = draw(FILLER), draw(FILLER)
    leaf = before + " " + secret_text + " " + after if draw(st.booleans()) else secret_text
    if draw(st.booleans()):
        planted_leaf = {draw(SECRET_KEYS): draw(BODY)}
        secret = next(iter(planted_leaf.values()))
    else:
        planted_leaf = leaf
    base = draw(STRUCTURE)
    path = draw(st.lists(st.sampled_from(["list", "dict"]), max_size=3))
    node = planted_leaf
    for step in path:
        node = [node] if step == "list" else {draw(PLAIN_KEYS): node}
    return {"base": base, "planted": node}, secret


@settings(max_examples=300, deadline=None)
@given(structure_with_secret())
def test_a_planted_secret_never_survives(case) -> None:
    data, secret = case
    assert secret not in json.dumps(redact(data))


def test_run_together_keys() -> None:
    assert is_secret_key("mytoken") and is_secret_key("DBPASSWORD") and is_secret_key("dbpwd")


@settings(max_examples=300, deadline=None)
@given(st.one_of(structure_with_secret().map(lambda c: c[0]), STRUCTURE))
def test_redaction_is_idempotent(data) -> None:
    once = redact(data)
    assert redact(once) == once


@settings(max_examples=200, deadline=None)
@given(STRUCTURE)
def test_data_without_secrets_is_unchanged(data) -> None:
    assert redact(data) == data


@settings(max_examples=100, deadline=None)
@given(SECRET_KEYS)
def test_secret_key_variants_are_recognised(key) -> None:
    assert is_secret_key(key)


def test_exceptions_and_their_causes_are_redacted_in_place() -> None:
    from tools.redaction import redact_exception

    try:
        try:
            raise RuntimeError("GET https://u:hunter2-pw@h/x failed")
        except RuntimeError as inner:
            raise ValueError("wrapped: password=s3cr3t-Value", 3) from inner
    except ValueError as exc:
        redacted = redact_exception(exc)
    assert redacted.args == ("wrapped: password=***", 3)
    assert str(redacted.__cause__) == "GET https://u:***@h/x failed"


def test_log_filter_redacts_message_arguments_and_traceback() -> None:
    import logging

    from tools.redaction import RedactingFilter

    record = logging.LogRecord(
        "x", logging.ERROR, "f", 1, "token=%s for %s", ("t0k3n", "bob"), None
    )
    try:
        raise RuntimeError("Authorization: Bearer abc.def-ghi")
    except RuntimeError:
        import sys

        record.exc_info = sys.exc_info()
    assert RedactingFilter().filter(record)
    text = logging.Formatter().format(record)
    assert "t0k3n" not in text and "abc.def-ghi" not in text
    assert "token=*** for bob" in text and "Authorization: Bearer ***" in text
