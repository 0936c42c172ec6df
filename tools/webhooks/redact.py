"""Keep subscription-URL credentials out of everything a delivery leaves behind.

A subscription URL may carry secrets: a password or token in its userinfo, a token in
its query string (``?token=``, Azure ``sig=``), or a secret path segment (Slack's
``/services/T…/B…/<secret>``). The delivery log, the CLI, log lines and the reasons of
retries and dead letters show :func:`redact_url` of it instead, and every error message
goes through :func:`scrub` (which knows the URL's secret parts) or
:func:`redact_urls_in` (which finds URLs in free text, for records written before).
"""

from __future__ import annotations

import re
from urllib.parse import unquote

from yarl import URL

MASK = "***"
#: Path segments at least this long that contain a digit look like tokens.
_TOKEN_SEGMENT_LEN = 16
_URL_IN_TEXT = re.compile(r"""https?://[^\s'"<>]+""", re.IGNORECASE)


def _secret_segment(segment: str) -> bool:
    return len(segment) >= _TOKEN_SEGMENT_LEN and any(c.isdigit() for c in segment)


def redact_url(url: str) -> str:
    """``scheme://host[:port]/path`` with userinfo dropped, query values and token-like
    path segments masked and the fragment removed; ``(unparseable URL)`` if yarl
    refuses it (its text may hold anything)."""
    try:
        parsed = URL(url)
        host = parsed.raw_host
        scheme = parsed.scheme
        port = parsed.explicit_port
    except (ValueError, TypeError):
        return "(unparseable URL)"
    if not scheme or not host:
        return "(unparseable URL)"
    netloc = f"[{host}]" if ":" in host else host
    if port is not None:
        netloc += f":{port}"
    path = "/".join(MASK if _secret_segment(s) else s for s in parsed.raw_path.split("/"))
    query = "&".join(f"{k}={MASK}" for k in parsed.query)
    marker = f"{MASK}@" if parsed.raw_user or parsed.raw_password else ""
    return f"{scheme}://{marker}{netloc}{path}" + (f"?{query}" if query else "")


def secrets_of(url: str) -> list[str]:
    """The parts of ``url`` that may be credentials, raw and percent-decoded."""
    try:
        parsed = URL(url)
        found = [parsed.raw_user, parsed.raw_password, *parsed.query.values()]
        found += [s for s in parsed.raw_path.split("/") if _secret_segment(s)]
        found.append(parsed.raw_query_string)
    except (ValueError, TypeError):
        # Unparseable: everything after the scheme could be a secret.
        return [url, url.split("://", 1)[-1]]
    parts = [p for p in found if p]
    return sorted({v for p in parts for v in (p, unquote(p))}, key=len, reverse=True)


def scrub(text: str, url: str) -> str:
    """``text`` with ``url`` replaced by its redacted form and every credential of
    ``url`` masked wherever else it appears (e.g. inside an exception message)."""
    text = text.replace(url, redact_url(url))
    for secret in secrets_of(url):
        if len(secret) >= 3:
            text = text.replace(secret, MASK)
    return redact_urls_in(text)


def redact_urls_in(text: str) -> str:
    """Every http(s) URL found in ``text`` replaced by :func:`redact_url` of it."""
    return _URL_IN_TEXT.sub(lambda m: redact_url(m.group(0)), text)
