"""Where secrets hide in free text: the value patterns behind :mod:`tools.redaction`.

Two sources, applied in this order:

1. codebus' own rules (:data:`RULES`): the shapes that carry a secret *in context*
   (private-key blocks, URL passwords, ``Authorization``/``Cookie`` headers, command-line
   flags inside a string, ``name=value`` assignments whose name means a secret) and the
   token formats of the services codebus integrates with or that the maintained set
   below lacks (Azure DevOps PATs and SAS signatures, Google, OpenAI/Anthropic, Hugging
   Face, Stripe test and webhook keys, DigitalOcean, Vault, Databricks, npm).
2. the regex plugins of ``detect-secrets`` (Yelp's maintained set: AWS, GitHub, GitLab,
   Slack, Stripe, SendGrid, Twilio, JWT, PyPI, Discord, Telegram, Mailchimp, Square,
   Azure storage keys, ...), picked up by class so that a newer release adds its new
   detectors. Its entropy and keyword plugins are not used (they are tuned for source
   files and would mask image digests and commit ids); nor are its public-IP detector
   (an address is not a credential), its private-key detector (rule 1 masks the whole
   block, not only its first line) and its npm detector (quadratic on long lines).

Every replacement is a fixed point of every pattern, so redaction is idempotent.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterable
from typing import Any

MASK = "***"

Replacement = str | Callable[[re.Match[str]], str]

# Names of flags whose next word is a secret, inside a command line held in one string.
_SECRET_FLAGS = (
    r"password|passwd|pass|pwd|token|secret|api-?key|access-?key|secret-?key|auth-?token"
    r"|passphrase|client-?secret|private-?key"
)

RULES: tuple[tuple[re.Pattern[str], Replacement], ...] = (
    # A private key block (PEM, OpenSSH, PGP): everything between the markers; a block cut
    # short (an output cap) is masked to the end.
    (
        re.compile(
            r"(-----BEGIN [A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?-----)[\s\S]*?"
            r"(-----END [A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?-----|\Z)"
        ),
        rf"\1{MASK}\2",
    ),
    # user:password@ in a URL. The password may hold "/" and "#" (a careless but real
    # URL); it ends at the last "@" before whitespace.
    (
        re.compile(
            r"(?<![A-Za-z0-9+.\-])([A-Za-z][A-Za-z0-9+.\-]*://[^\s/?#@:]{0,256}:)[^\s@]{0,256}@"
        ),
        rf"\1{MASK}@",
    ),
    # Authorization header with any scheme (Bearer, Basic, Token, Bot, ...).
    (
        re.compile(
            r"(?i)(\b(?:proxy-)?authorization[\"']?\s*[:=]\s*[\"']?(?:[A-Za-z][\w-]*\s+)?)"
            r"[^\s\"',;]+"
        ),
        rf"\1{MASK}",
    ),
    # Cookies: every cookie of the header is a potential session.
    (re.compile(r"(?i)(\b(?:set-)?cookie[\"']?\s*[:=]\s*[\"']?)[^\n\"']+"), rf"\1{MASK}"),
    # Bearer and Basic credentials outside a header line.
    (re.compile(r"(?i)(\bbearer\s+)[A-Za-z0-9\-._~+/]+=*"), rf"\1{MASK}"),
    (
        re.compile(r"(\bBasic\s+)(?=[A-Za-z0-9+/]*[0-9+/=A-Z])[A-Za-z0-9+/]{6,}={0,2}"),
        rf"\1{MASK}",
    ),
    # mysql -pSECRET (the password glued to the flag).
    (re.compile(r"(?i)(\b(?:mysql\w*|mariadb\w*)\b[^\n]*?\s-p)(?!\s)[^\s'\"]+"), rf"\1{MASK}"),
    # --password SECRET / --token=SECRET inside one string.
    (
        re.compile(rf"(?i)((?<![\w-])--?(?:{_SECRET_FLAGS})(?:\s+|=))(?!-)[^\s'\"]+"),
        rf"\1{MASK}",
    ),
    # Vendor formats.
    (
        re.compile(r"https://hooks\.slack\.com/(?:services|workflows|triggers)/[A-Za-z0-9_/\-]+"),
        MASK,
    ),
    (re.compile(r"\bxox[abposre]-[A-Za-z0-9\-]+"), MASK),
    (re.compile(r"\bxapp-[A-Za-z0-9\-]+"), MASK),
    (re.compile(r"\bgh[pousr]_[A-Za-z0-9]{20,}"), MASK),
    (re.compile(r"\bgithub_pat_[A-Za-z0-9_]+"), MASK),
    (re.compile(r"\bgl(?:pat|dt|ft|soat|rt|cbt|ptt|agent|oas)-[A-Za-z0-9_\-]{20,}"), MASK),
    (re.compile(r"\b(?:sk|rk|pk)_(?:live|test)_[A-Za-z0-9]{16,}"), MASK),
    (re.compile(r"\bwhsec_[A-Za-z0-9+/=]{20,}"), MASK),
    (re.compile(r"\bAIza[0-9A-Za-z_\-]{35}"), MASK),
    (re.compile(r"\bGOCSPX-[A-Za-z0-9_\-]{20,}"), MASK),
    (re.compile(r"\bya29\.[A-Za-z0-9_\-]{20,}"), MASK),
    (re.compile(r"\bsk-(?:proj-|svcacct-|admin-|ant-[a-z]+\d*-)?[A-Za-z0-9_\-]{20,}"), MASK),
    (re.compile(r"\bhf_[A-Za-z0-9]{30,}"), MASK),
    (re.compile(r"\bSG\.[A-Za-z0-9_\-]{16,}\.[A-Za-z0-9_\-]{16,}"), MASK),
    (re.compile(r"(?i)([?&]sig=)[^&\s\"'#]+"), rf"\1{MASK}"),
    # Azure DevOps PATs: 52 characters of base32 (lower case), or the 84-character format
    # with the "AZDO" signature.
    (re.compile(r"\b[A-Za-z0-9]{52,76}AZDO[A-Za-z0-9]{4}\b"), MASK),
    (re.compile(r"(?<![A-Za-z0-9])[a-z2-7]{52}(?![A-Za-z0-9])"), MASK),
    (re.compile(r"\bdo[por]_v1_[a-f0-9]{64}"), MASK),
    (re.compile(r"\bhv[sbr]\.[A-Za-z0-9_\-]{20,}"), MASK),
    (re.compile(r"\bdapi[a-f0-9]{32}(?:-\d+)?"), MASK),
    (re.compile(r"\bnpm_[A-Za-z0-9]{36}"), MASK),
    (re.compile(r"\bpypi-[A-Za-z0-9_\-]{50,}"), MASK),
    (re.compile(r"\beyJ[A-Za-z0-9_\-]*\.[A-Za-z0-9_\-]+\.?[A-Za-z0-9_\-]*"), MASK),
)

# name=value, name: value, "name": "value" - masked when the name means a secret (decided
# by the caller, which knows the key rules). The value is only looked at, not consumed:
# in "failed: password=x" the value of "failed" holds the next assignment.
ASSIGNMENT = re.compile(
    # Keys start at a word boundary: scanning from inside a long word would be quadratic.
    r"(?<![A-Za-z0-9_.\-])(?P<key>[A-Za-z_][A-Za-z0-9_.\-]*)(?P<sep>[\"']?\s*(?::=|=>|[:=])\s*[\"']?)"
)
# The value is matched only after a secret name, and only looked at, not consumed by the
# scan: in "failed: password=x" the value of "failed" holds the next assignment.
_VALUE = re.compile(r"[^\s\"',;&}\]]+")


def mask_assignments(text: str, secret_name: Callable[[str], bool]) -> str:
    """Mask the value of every assignment whose name ``secret_name`` recognises."""
    out: list[str] = []
    pos = 0
    for match in ASSIGNMENT.finditer(text):
        if match.start() < pos or not secret_name(match.group("key")):
            continue
        value = _VALUE.match(text, match.end())
        if value is None:
            continue
        out.append(text[pos : match.end()])
        out.append(MASK)
        pos = value.end()
    out.append(text[pos:])
    return "".join(out)


# detect-secrets plugins that do not fit free-text redaction (see the module docstring).
# NpmDetector's ".+...:_authToken=" backtracks quadratically on a long line; npm tokens
# are masked by the npm_ rule and "_authToken=" by the assignment rule instead.
_SKIPPED_PLUGINS = frozenset({"IPPublicDetector", "PrivateKeyDetector", "NpmDetector"})
_DELIMITERS = " \t\r\n=:\"'"


@functools.cache
def maintained_patterns() -> tuple[re.Pattern[str], ...]:
    """The detect-secrets regexes, loaded on first use.

    Importing detect-secrets takes about a second (it pulls in requests); a CLI command
    that never redacts should not pay for it.
    """
    from detect_secrets.core.plugins.util import get_mapping_from_secret_type_to_class
    from detect_secrets.plugins.base import RegexBasedDetector

    patterns: list[re.Pattern[str]] = []
    plugin: Any
    for plugin in get_mapping_from_secret_type_to_class().values():
        if not issubclass(plugin, RegexBasedDetector) or plugin.__name__ in _SKIPPED_PLUGINS:
            continue
        denylist: Iterable[re.Pattern[str]] = plugin.denylist
        patterns.extend(denylist)
    return tuple(patterns)


def mask_maintained(text: str) -> str:
    """Mask what the detect-secrets regex plugins find (the secret group, or the match)."""
    for pattern in maintained_patterns():
        for match in list(pattern.finditer(text)):
            groups = [g for g in match.groups() if g] if pattern.groups else []
            for found in groups or [match.group(0)]:
                found = found.strip(_DELIMITERS)
                if found and found != MASK:
                    text = text.replace(found, MASK)
    return text
