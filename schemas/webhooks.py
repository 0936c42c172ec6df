"""Webhook signatures as pure functions: Standard Webhooks and GitHub.

Standard Webhooks (https://www.standardwebhooks.com/) signs ``{id}.{timestamp}.{body}``
with HMAC-SHA256 under a secret written ``whsec_<base64>``; the ``webhook-signature``
header carries one or more space-separated ``v1,<base64>`` signatures (several while a
secret is being rotated). GitHub signs the raw body with HMAC-SHA256 under the hook's
secret and sends ``X-Hub-Signature-256: sha256=<hex>``.

Every comparison uses :func:`hmac.compare_digest` so that timing reveals nothing about
how much of a guess was right. Nothing here reads a clock or the network: callers pass
``now`` in.

    WebhookVerificationError(ValueError)   the request is not authentic
    ├── MissingHeader                       a required header is absent or empty
    ├── TimestampOutOfTolerance             too old or too far in the future (replay window)
    └── SignatureMismatch                   no presented signature matches
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac

SECRET_PREFIX = "whsec_"
SIGNATURE_VERSION = "v1"
DEFAULT_TOLERANCE_SECONDS = 300
#: Standard Webhooks libraries reject secrets shorter than this many bytes.
MIN_SECRET_BYTES = 16


class WebhookVerificationError(ValueError):
    """A webhook failed verification; ``reason`` is a short machine-readable code."""

    reason = "invalid"


class MissingHeader(WebhookVerificationError):
    """A required header is absent or empty; ``header`` names it."""

    reason = "missing_header"

    def __init__(self, header: str) -> None:
        super().__init__(f"missing required header {header!r}")
        self.header = header


class TimestampOutOfTolerance(WebhookVerificationError):
    """The signed timestamp is outside the allowed window (or not an integer)."""

    reason = "timestamp"


class SignatureMismatch(WebhookVerificationError):
    """None of the presented signatures matches the body."""

    reason = "signature"


def decode_secret(secret: str) -> bytes:
    """The key bytes of a ``whsec_<base64>`` secret.

    Raises ``ValueError`` for any other form: a typo in a secret must fail loudly at
    configuration time, not verify nothing at request time.
    """
    if not secret.startswith(SECRET_PREFIX):
        raise ValueError(f"secret must start with {SECRET_PREFIX!r}")
    try:
        key = base64.b64decode(secret[len(SECRET_PREFIX) :], validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError("secret must be 'whsec_' followed by base64") from exc
    if len(key) < MIN_SECRET_BYTES:
        raise ValueError(f"secret must decode to at least {MIN_SECRET_BYTES} bytes")
    return key


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """The ``v1,<base64>`` Standard Webhooks signature of one message."""
    key = decode_secret(secret)
    signed = f"{msg_id}.{timestamp}.".encode() + body
    digest = hmac.new(key, signed, hashlib.sha256).digest()
    return f"{SIGNATURE_VERSION},{base64.b64encode(digest).decode()}"


def sign_headers(secret: str, msg_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    """The three Standard Webhooks headers for sending ``body``."""
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": sign(secret, msg_id, timestamp, body),
    }


def verify(
    secret: str,
    msg_id: str | None,
    timestamp: str | None,
    body: bytes,
    signatures: str | None,
    *,
    now: float,
    tolerance: int = DEFAULT_TOLERANCE_SECONDS,
) -> int:
    """Check a Standard Webhooks message; returns the verified timestamp.

    ``signatures`` is the raw ``webhook-signature`` header: space-separated
    ``version,signature`` pairs of which one valid ``v1`` pair suffices. The timestamp
    must lie within ``tolerance`` seconds of ``now`` in both directions, so that a
    captured request cannot be replayed later and a skewed clock cannot pre-date one.
    """
    if not msg_id:
        raise MissingHeader("webhook-id")
    if not timestamp:
        raise MissingHeader("webhook-timestamp")
    if not signatures:
        raise MissingHeader("webhook-signature")
    if not timestamp.isascii() or not timestamp.isdigit() or len(timestamp) > 12:
        raise TimestampOutOfTolerance("webhook-timestamp must be integer Unix seconds")
    ts = int(timestamp)
    if ts < now - tolerance:
        raise TimestampOutOfTolerance("webhook-timestamp is too old")
    if ts > now + tolerance:
        raise TimestampOutOfTolerance("webhook-timestamp is too far in the future")
    expected = sign(secret, msg_id, ts, body).encode()
    matched = False
    for candidate in signatures.split(" "):
        version, _, _value = candidate.partition(",")
        if version != SIGNATURE_VERSION:
            continue
        # Keep looping after a match: the time taken must not depend on which one matched.
        matched |= hmac.compare_digest(candidate.encode(), expected)
    if not matched:
        raise SignatureMismatch("no webhook-signature matches the body")
    return ts


def github_signature(secret: str | bytes, body: bytes) -> str:
    """The ``sha256=<hex>`` value GitHub sends in ``X-Hub-Signature-256``."""
    key = secret.encode() if isinstance(secret, str) else secret
    return "sha256=" + hmac.new(key, body, hashlib.sha256).hexdigest()


def verify_github(secret: str | bytes, body: bytes, header: str | None) -> None:
    """Check ``X-Hub-Signature-256``; raises :class:`WebhookVerificationError`."""
    if not header:
        raise MissingHeader("X-Hub-Signature-256")
    expected = github_signature(secret, body).encode()
    if not hmac.compare_digest(header.strip().encode(), expected):
        raise SignatureMismatch("X-Hub-Signature-256 does not match the body")


def bearer_token(authorization: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header, or None."""
    if not authorization:
        return None
    scheme, _, token = authorization.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def tokens_equal(presented: str, expected: str) -> bool:
    """Constant-time equality of two tokens (compared as UTF-8 bytes)."""
    return hmac.compare_digest(presented.encode(), expected.encode())


def hash_api_key(key: str) -> str:
    """The lower-case hex SHA-256 under which an API key is stored in configuration."""
    return hashlib.sha256(key.encode()).hexdigest()
