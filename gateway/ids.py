"""Event and correlation ids the gateway mints: keyed, so no other sender can predict them.

Every id the gateway puts on the bus is ``HMAC-SHA256(credential, scope parts)`` shaped as
a UUID (version 8, "vendor-specific"). The credential is the secret that authenticated
the request: a webhook source's signing secret or token, or the API key the caller
presented. Two consequences:

- a sender's retry or redelivery maps to the *same* id, so subscribers' idempotency
  inboxes drop the duplicate;
- an id can only be produced by someone holding that credential, and ids of different
  senders live in disjoint scopes, so no key can pre-claim (and so suppress) another
  sender's event or join another sender's workflow (issue 14, V2 and V3).
"""

from __future__ import annotations

import hashlib
import hmac
import uuid

_SEP = "\x1f"


def keyed_id(credential: str, *parts: str) -> str:
    """A UUID-shaped HMAC of ``parts`` under ``credential``."""
    digest = hmac.new(credential.encode(), _SEP.join(parts).encode(), hashlib.sha256).digest()
    value = int.from_bytes(digest[:16], "big")
    # RFC 9562 version 8 (custom) with the RFC 4122 variant bits.
    value &= ~(0xF << 76)
    value |= 0x8 << 76
    value &= ~(0x3 << 62)
    value |= 0x2 << 62
    return str(uuid.UUID(int=value))


def fingerprint(*parts: str | bytes) -> str:
    """A SHA-256 hex digest of ``parts``: what an idempotency key or body is bound to."""
    h = hashlib.sha256()
    for part in parts:
        data = part.encode() if isinstance(part, str) else part
        h.update(len(data).to_bytes(8, "big"))
        h.update(data)
    return h.hexdigest()
