"""Remove secrets from data before it is written to an audit sink or a log.

Two rules, applied to nested dicts, lists and tuples:

* by key name: the value of a key such as ``password``, ``api_key``, ``X-Auth-Token``,
  ``clientSecret`` or ``webhook_url`` is replaced as a whole by :data:`REDACTED`;
* by value pattern, in every string anywhere: bearer/basic credentials, Slack tokens,
  AWS access key ids (and 40-character secret keys next to them), GitHub tokens, JWTs,
  passwords in URLs (``scheme://user:***@host``) and ``password=...`` assignments.

The result is a new structure; the input is not modified. Redaction is idempotent:
redacting redacted data changes nothing.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

REDACTED = "***REDACTED***"
MASK = "***"

# Keys whose normalised (lower-case, alphanumeric only) form contains one of these.
_KEY_SUBSTRINGS = (
    "password",
    "passwd",
    "passphrase",
    "secret",
    "apikey",
    "accesskey",
    "privatekey",
    "authorization",
    "credential",
    "webhookurl",
    "accesstoken",
    "refreshtoken",
    "sessiontoken",
    "clienttoken",
    "authtoken",
    "cookie",
    "connectionstring",
)
# Short names that only count as a whole word of the key ("pat" must not hit "path").
_KEY_WORDS = frozenset({"token", "tokens", "pat", "pwd", "pass", "auth", "jwt", "dsn", "otp"})
# ...and a few of them also as the end of a run-together key ("mytoken", "dbpwd").
_KEY_SUFFIXES = ("token", "tokens", "pwd", "jwt")

_SPLIT = re.compile(r"[^A-Za-z0-9]+")
_CAMEL = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|[0-9]+")

_AWS_KEY_ID = re.compile(r"(?:AKIA|ASIA|AGPA|AIDA|AROA|AIPA|ANPA|ANVA|ABIA|ACCA)[A-Z0-9]{16}")
# Any run this long next to a key id is taken for its secret: over-masking is cheap.
_AWS_SECRET = re.compile(r"[A-Za-z0-9/+]{40,}")

# (pattern, replacement); order matters only for readability of the output: every
# replacement is itself a fixed point of every pattern.
_VALUE_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    # user:password@ in any URL; greedy up to the last "@" of the authority.
    (re.compile(r"([A-Za-z][A-Za-z0-9+.\-]*://[^\s:/@?#]*:)[^\s/?#]*@"), r"\1***@"),
    # Authorization header values.
    (re.compile(r"(?i)(bearer)(\s+)[A-Za-z0-9\-._~+/]+=*"), r"\1\2***"),
    (re.compile(r"(Basic)(\s+)[A-Za-z0-9+/]{12,}=*"), r"\1\2***"),
    (re.compile(r"xox[abposre]-[A-Za-z0-9\-]+"), MASK),
    (re.compile(r"xapp-[A-Za-z0-9\-]+"), MASK),
    (re.compile(r"(?:ghp|gho|ghu|ghs|ghr)_[A-Za-z0-9]+"), MASK),
    (re.compile(r"github_pat_[A-Za-z0-9_]+"), MASK),
    (re.compile(r"eyJ[A-Za-z0-9_\-]*\.[A-Za-z0-9_\-]+\.?[A-Za-z0-9_\-]*"), MASK),
    # key=value / key: value / "key": "value" assignments inside free text.
    (
        re.compile(
            r"(?i)((?:password|passwd|pwd|secret|token|api[_\-]?key|access[_\-]?key|"
            r"secret[_\-]?key|private[_\-]?key|client[_\-]?secret|authorization)"
            r"[\"']?\s*[:=]\s*[\"']?)[^\s&;,\"'}\]]+"
        ),
        r"\1***",
    ),
)

# Command-line flags whose *next* argv element is a secret (argv lists of the shell tool).
_SECRET_FLAG = re.compile(
    r"(?i)^--?(?:p|password|passwd|token|secret|api-?key|access-?key|secret-?key|auth)$"
)


def is_secret_key(key: str) -> bool:
    """Whether a mapping key names a secret (case-insensitive, any separator style)."""
    compact = "".join(_SPLIT.split(key)).lower()
    if any(s in compact for s in _KEY_SUBSTRINGS):
        return True
    if compact in _KEY_WORDS or compact.endswith(_KEY_SUFFIXES):
        return True
    for part in _SPLIT.split(key):
        if part.lower() in _KEY_WORDS:
            return True
        if any(w.lower() in _KEY_WORDS for w in _CAMEL.findall(part)):
            return True
    return False


def redact_text(text: str) -> str:
    """Mask every secret-looking substring of ``text``."""
    if _AWS_KEY_ID.search(text):
        # A secret access key has no prefix; it is only recognisable next to its id.
        text = _AWS_SECRET.sub(MASK, _AWS_KEY_ID.sub(MASK, text))
    for pattern, replacement in _VALUE_PATTERNS:
        text = pattern.sub(replacement, text)
    return text


def redact(value: Any) -> Any:
    """A copy of ``value`` (JSON-like data) with every secret masked."""
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, Mapping):
        return _redact_mapping(value)
    if isinstance(value, (list, tuple)):
        return _redact_sequence(value)
    return value


def _redact_mapping(value: Mapping[Any, Any]) -> dict[Any, Any]:
    # A dict holding an AWS key id also holds its secret in a sibling, whatever its key.
    has_key_id = any(isinstance(v, str) and _AWS_KEY_ID.search(v) for v in value.values())
    out: dict[Any, Any] = {}
    for key, item in value.items():
        if isinstance(key, str) and is_secret_key(key):
            out[key] = REDACTED
        elif has_key_id and isinstance(item, str) and _AWS_SECRET.search(item):
            out[key] = _AWS_SECRET.sub(MASK, redact_text(item))
        else:
            out[key] = redact(item)
    return out


def _redact_sequence(value: list[Any] | tuple[Any, ...]) -> list[Any] | tuple[Any, ...]:
    out: list[Any] = []
    secret_next = False
    for item in value:
        if secret_next and isinstance(item, str):
            out.append(MASK)
            secret_next = False
            continue
        secret_next = isinstance(item, str) and bool(_SECRET_FLAG.match(item))
        out.append(redact(item))
    return tuple(out) if isinstance(value, tuple) else out
