"""Remove secrets from data before it is written to an audit sink, a log or an error.

Three rules, applied to nested dicts, lists and tuples:

* by key name: the value of a key such as ``password``, ``api_key``, ``X-Auth-Token``,
  ``clientSecret`` or ``webhook_url`` is replaced as a whole by :data:`REDACTED`;
* by value pattern, in every string anywhere (:mod:`tools.secret_patterns`: codebus'
  own rules plus the regex plugins of detect-secrets): private-key blocks, URL
  passwords, ``Authorization`` and ``Cookie`` headers, secret flags and ``name=value``
  assignments inside a command line, and the token formats of some 40 services;
* in argv lists, the element after a flag such as ``-p`` or ``--token``.

Errors and logs: :func:`redact_exception` rewrites an exception (and its causes) in
place, so whoever catches it, logs it or publishes its message sees it redacted; the
:class:`RedactingFilter` does the same to every log record a handler emits.

The result is a new structure; the input is not modified. Redaction is idempotent:
redacting redacted data changes nothing.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from typing import Any

from tools.secret_patterns import MASK, RULES, mask_assignments, mask_maintained

REDACTED = "***REDACTED***"

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
    "accountkey",
    "sharedaccesskey",
    "privatetoken",
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
    for pattern, replacement in RULES:
        text = pattern.sub(replacement, text)
    text = mask_assignments(text, _secret_name)
    return mask_maintained(text)


def _secret_name(key: str) -> bool:
    # The Authorization rule already kept the scheme ("Bearer ***"): leave it readable.
    return not key.lower().endswith("authorization") and is_secret_key(key)


def redact_exception(exc: BaseException) -> BaseException:
    """Redact the string arguments of ``exc`` and of its causes, in place; returns it."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        try:
            current.args = tuple(redact_text(a) if isinstance(a, str) else a for a in current.args)
        except (AttributeError, TypeError):  # an exception type with read-only args
            pass
        current = current.__cause__ or current.__context__
    return exc


class RedactingFilter(logging.Filter):
    """A handler filter that redacts the message, the traceback and the stack of a record.

    The redacted traceback is stored as ``record.exc_text``, which formatters print
    instead of formatting ``exc_info`` again.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        """Rewrite ``record`` redacted; never drops it."""
        try:
            message = record.getMessage()
        except Exception:  # a broken format string: keep what there is
            message = str(record.msg)
        record.msg, record.args = redact_text(message), None
        if record.exc_info and record.exc_info[0] is not None and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact_text(record.exc_text)
        if record.stack_info:
            record.stack_info = redact_text(record.stack_info)
        return True


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
