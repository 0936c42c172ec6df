"""Signature primitives of schemas/webhooks.py against published test vectors."""

from __future__ import annotations

import base64
import hashlib
import hmac

import pytest

from schemas.webhooks import (
    MissingHeader,
    SignatureMismatch,
    TimestampOutOfTolerance,
    bearer_token,
    decode_secret,
    github_signature,
    hash_api_key,
    sign,
    tokens_equal,
    verify,
    verify_github,
)

# Standard Webhooks reference vector (used by the standard-webhooks / svix libraries).
SW_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
SW_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
SW_TS = 1614265330
SW_BODY = b'{"test": 2432232314}'
SW_SIG = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="

# GitHub's documented example for validating webhook deliveries.
GH_SECRET = "It's a Secret to Everybody"
GH_BODY = b"Hello, World!"
GH_SIG = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"


def test_standard_webhooks_reference_vector() -> None:
    assert sign(SW_SECRET, SW_ID, SW_TS, SW_BODY) == SW_SIG
    assert verify(SW_SECRET, SW_ID, str(SW_TS), SW_BODY, SW_SIG, now=SW_TS) == SW_TS


def test_sign_matches_an_independent_hmac() -> None:
    secret = "whsec_" + base64.b64encode(b"k" * 24).decode()
    body = b'{"a":1}'
    expected = base64.b64encode(
        hmac.new(b"k" * 24, b"id-1.1700000000." + body, hashlib.sha256).digest()
    ).decode()
    assert sign(secret, "id-1", 1700000000, body) == f"v1,{expected}"


def test_verify_accepts_any_one_of_several_signatures() -> None:
    header = f"v1a,zzz v1,bm9wZQ== {SW_SIG}"
    assert verify(SW_SECRET, SW_ID, str(SW_TS), SW_BODY, header, now=SW_TS)


@pytest.mark.parametrize(
    "mutate",
    [
        lambda h: {**h, "body": SW_BODY + b" "},
        lambda h: {**h, "msg_id": SW_ID + "x"},
        lambda h: {**h, "signatures": "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE"},
        lambda h: {**h, "signatures": SW_SIG.replace("v1,", "v2,")},
    ],
    ids=["tampered-body", "other-id", "truncated-signature", "wrong-version"],
)
def test_verify_rejects_tampering(mutate) -> None:
    args = {"msg_id": SW_ID, "body": SW_BODY, "signatures": SW_SIG}
    args = mutate(args)
    with pytest.raises(SignatureMismatch):
        verify(SW_SECRET, args["msg_id"], str(SW_TS), args["body"], args["signatures"], now=SW_TS)


@pytest.mark.parametrize("offset", [-301, 301, -10_000, 86_400])
def test_verify_rejects_timestamps_outside_tolerance(offset: int) -> None:
    ts = SW_TS + offset
    sig = sign(SW_SECRET, SW_ID, ts, SW_BODY)
    with pytest.raises(TimestampOutOfTolerance):
        verify(SW_SECRET, SW_ID, str(ts), SW_BODY, sig, now=SW_TS)


@pytest.mark.parametrize("offset", [-300, 0, 300])
def test_verify_accepts_timestamps_at_the_edge(offset: int) -> None:
    ts = SW_TS + offset
    sig = sign(SW_SECRET, SW_ID, ts, SW_BODY)
    assert verify(SW_SECRET, SW_ID, str(ts), SW_BODY, sig, now=SW_TS) == ts


@pytest.mark.parametrize("bad", ["1614265330.5", "-1", "abc", "١٦١٤٢٦٥٣٣٠", "9" * 20])
def test_verify_rejects_non_integer_timestamps(bad: str) -> None:
    with pytest.raises(TimestampOutOfTolerance):
        verify(SW_SECRET, SW_ID, bad, SW_BODY, SW_SIG, now=SW_TS)


@pytest.mark.parametrize(
    ("msg_id", "ts", "sig", "header"),
    [
        (None, str(SW_TS), SW_SIG, "webhook-id"),
        (SW_ID, None, SW_SIG, "webhook-timestamp"),
        (SW_ID, str(SW_TS), "", "webhook-signature"),
    ],
)
def test_verify_names_the_missing_header(msg_id, ts, sig, header) -> None:
    with pytest.raises(MissingHeader) as info:
        verify(SW_SECRET, msg_id, ts, SW_BODY, sig, now=SW_TS)
    assert info.value.header == header


@pytest.mark.parametrize(
    "secret", ["MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "whsec_!!!", "whsec_c2hvcnQ="]
)
def test_decode_secret_refuses_malformed_secrets(secret: str) -> None:
    with pytest.raises(ValueError):
        decode_secret(secret)


def test_github_published_vector() -> None:
    assert github_signature(GH_SECRET, GH_BODY) == GH_SIG
    verify_github(GH_SECRET, GH_BODY, GH_SIG)


@pytest.mark.parametrize(
    "header",
    [None, "", GH_SIG.upper(), GH_SIG[:-1] + "f", "sha1=" + GH_SIG[7:], GH_SIG[7:]],
)
def test_github_rejects_wrong_signatures(header) -> None:
    with pytest.raises((SignatureMismatch, MissingHeader)):
        verify_github(GH_SECRET, GH_BODY, header)


def test_github_rejects_tampered_body() -> None:
    with pytest.raises(SignatureMismatch):
        verify_github(GH_SECRET, b"Hello, World?", GH_SIG)


def test_bearer_and_token_helpers() -> None:
    assert bearer_token("Bearer abc") == "abc"
    assert bearer_token("bearer   abc ") == "abc"
    assert bearer_token("Basic abc") is None
    assert bearer_token("Bearer ") is None
    assert bearer_token(None) is None
    assert tokens_equal("abc", "abc") and not tokens_equal("abc", "abd")
    assert hash_api_key("k") == hashlib.sha256(b"k").hexdigest()
