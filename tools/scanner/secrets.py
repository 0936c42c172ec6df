"""Rules for hard-coded secrets and risky code, applied to the text of one file.

Each rule is a regular expression run over the whole text (so calls spanning lines
are seen), optionally with a check on the match: the entropy of a value, or the
arguments of a call (``shell=True``, a ``SafeLoader``). Secret values are never
returned: excerpts have every secret found on the line replaced by ``[REDACTED]``.
"""

from __future__ import annotations

import fnmatch
import math
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

MASK = "[REDACTED]"
EXCERPT_CHARS = 200
MIN_ENTROPY = 3.5  # bits per char: random base64/hex tokens score ~4-6, words ~2.5-3.3


@dataclass(frozen=True)
class Rule:
    """A pattern; ``secret`` names the group holding a value to mask, if any."""

    id: str
    category: str  # "secret" or "risky-code"
    severity: str
    pattern: re.Pattern[str]
    secret: str | None = None
    check: Callable[[re.Match[str], str], bool] | None = None
    files: tuple[str, ...] | None = None  # basename globs the rule is limited to

    def applies_to(self, filename: str) -> bool:
        """Whether the rule runs on a file of this name."""
        name = filename.rsplit("/", 1)[-1]
        return self.files is None or any(fnmatch.fnmatchcase(name, g) for g in self.files)


# Configuration-like files, where unquoted values are normal (and code is not).
CONFIG_FILES = (
    ".env",
    ".env.*",
    "*.env",
    "*.sh",
    "*.bash",
    "*.ini",
    "*.cfg",
    "*.conf",
    "*.properties",
    "*.yml",
    "*.yaml",
    "Dockerfile*",
)


@dataclass(frozen=True)
class Hit:
    """One rule match: where it is and what to mask on its line."""

    rule: Rule
    line: int
    start: int  # offset in the text
    secret_span: tuple[int, int] | None


def shannon_entropy(value: str) -> float:
    """Bits per character of ``value``."""
    if not value:
        return 0.0
    counts = Counter(value)
    return -sum(n / len(value) * math.log2(n / len(value)) for n in counts.values())


def _call_args(match: re.Match[str], text: str) -> str:
    """The text of the call whose ``(`` ends ``match``, up to its closing parenthesis."""
    depth, end = 0, match.end() - 1
    for pos in range(end, min(len(text), end + 2000)):
        char = text[pos]
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
            if depth == 0:
                return text[end : pos + 1]
    return text[end : end + 2000]


def _high_entropy(match: re.Match[str], _text: str) -> bool:
    return shannon_entropy(match.group("secret")) >= MIN_ENTROPY


def _not_placeholder(match: re.Match[str], _text: str) -> bool:
    # References to the environment or templating are not hard-coded secrets.
    value = match.group("secret")
    return not value.startswith(("${", "{{", "%(", "<", "$(", "os.environ", "env("))


def _shell_true(match: re.Match[str], text: str) -> bool:
    if "getoutput" in match.group(0) or "getstatusoutput" in match.group(0):
        return True  # these always run through /bin/sh
    return re.search(r"\bshell\s*=\s*True\b", _call_args(match, text)) is not None


def _unsafe_yaml(match: re.Match[str], text: str) -> bool:
    if "unsafe_load" in match.group(0):
        return True
    return re.search(r"\b(C?SafeLoader|BaseLoader)\b", _call_args(match, text)) is None


_Q = r"[\"']"
_ASSIGN = r"[\"']?\s*(?:=|:=|:|=>)\s*"

RULES: tuple[Rule, ...] = (
    # Specific secrets first: a value they claim is not reported again by generic rules.
    Rule(
        "private-key",
        "secret",
        "critical",
        re.compile(r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----"),
    ),
    Rule(
        "aws-secret-access-key",
        "secret",
        "critical",
        re.compile(
            r"(?i)\baws_?(?:secret_?access_?key|secret_?key|secret)\b"
            + _ASSIGN
            + r"[\"']?(?P<secret>[A-Za-z0-9/+=]{40})(?![A-Za-z0-9/+=])"
        ),
        "secret",
    ),
    Rule(
        "aws-access-key-id",
        "secret",
        "high",
        re.compile(r"\b(?P<secret>(?:AKIA|ASIA|ABIA|ACCA|AIDA|AROA)[0-9A-Z]{16})\b"),
        "secret",
    ),
    Rule(
        "github-token",
        "secret",
        "high",
        re.compile(
            r"\b(?P<secret>(?:ghp|gho|ghu|ghs|ghr)_[A-Za-z0-9]{36,255}|github_pat_[A-Za-z0-9_]{22,255})\b"
        ),
        "secret",
    ),
    Rule(
        "slack-token",
        "secret",
        "high",
        re.compile(r"\b(?P<secret>xox[abposr]-[0-9A-Za-z-]{10,})\b"),
        "secret",
    ),
    Rule(
        "slack-webhook",
        "secret",
        "high",
        re.compile(r"(?P<secret>https://hooks\.slack\.com/services/[A-Za-z0-9_/]{20,})"),
        "secret",
    ),
    Rule(
        "generic-password",
        "secret",
        "high",
        re.compile(
            r"(?i)\b[\w.-]*(?:password|passwd|pwd)[\w.-]*"
            + _ASSIGN
            + r"(?P<q>"
            + _Q
            + r")(?P<secret>[^\"'\n]{1,200})(?P=q)"
        ),
        "secret",
        _not_placeholder,
    ),
    Rule(
        "generic-password",
        "secret",
        "high",
        # Unquoted shell/.env assignments: DB_PASSWORD=hunter2
        re.compile(
            r"(?m)^[ \t]*(?:export[ \t]+)?[A-Z0-9_]*(?:PASSWORD|PASSWD)[A-Z0-9_]*[ \t]*=[ \t]*"
            r"(?P<secret>[^\s\"'$#{][^\s#]{3,})"
        ),
        "secret",
        _not_placeholder,
        CONFIG_FILES,
    ),
    Rule(
        "generic-password",
        "secret",
        "high",
        # Unquoted YAML values: "password: hunter2"
        re.compile(
            r"(?im)^[ \t-]*[\w.-]*(?:password|passwd)[\w.-]*[ \t]*:[ \t]+"
            r"(?P<secret>[^\s\"'$#{&*|>][^\s#]{3,})[ \t]*$"
        ),
        "secret",
        _not_placeholder,
        ("*.yml", "*.yaml"),
    ),
    Rule(
        "high-entropy-secret",
        "secret",
        "high",
        re.compile(
            r"(?i)\b[\w.-]*(?:secret|token|api_?key|apikey|access_?key|auth_?key|credential|private_?key)[\w.-]*"
            + _ASSIGN
            + r"(?P<q>"
            + _Q
            + r")(?P<secret>[A-Za-z0-9+/=_.~-]{16,})(?P=q)"
        ),
        "secret",
        _high_entropy,
    ),
    Rule("eval-call", "risky-code", "medium", re.compile(r"(?<![\w.])eval\s*\(")),
    Rule("exec-call", "risky-code", "medium", re.compile(r"(?<![\w.])exec\s*\(")),
    Rule(
        "subprocess-shell-true",
        "risky-code",
        "high",
        re.compile(
            r"\bsubprocess\.(?:run|call|check_call|check_output|Popen|getoutput|getstatusoutput)\s*\("
            r"|(?<![\w.])Popen\s*\("
        ),
        check=_shell_true,
    ),
    Rule("os-system", "risky-code", "high", re.compile(r"\bos\.(?:system|popen)\s*\(")),
    Rule(
        "pickle-load",
        "risky-code",
        "high",
        re.compile(r"\b(?:c?pickle|_pickle|dill)\.loads?\s*\("),
    ),
    Rule(
        "yaml-unsafe-load",
        "risky-code",
        "high",
        re.compile(r"\byaml\.(?:load|load_all|unsafe_load)\s*\("),
        check=_unsafe_yaml,
    ),
    Rule("tls-verify-disabled", "risky-code", "medium", re.compile(r"\bverify\s*=\s*False\b")),
    Rule(
        "chmod-777",
        "risky-code",
        "medium",
        re.compile(
            r"\bchmod\s+(?:-[A-Za-z]+\s+)*0?777\b"
            r"|\bchmod\s*\([^)\n]*\b0o?777\b"
            r"|\bchmod\s+(?:-[A-Za-z]+\s+)*a\+rwx\b"
        ),
    ),
)


def _overlaps(span: tuple[int, int], spans: list[tuple[int, int]]) -> bool:
    return any(span[0] < end and start < span[1] for start, end in spans)


def find_hits(text: str, filename: str = "") -> list[Hit]:
    """Every rule match in ``text`` (of a file called ``filename``), by position."""
    hits: list[Hit] = []
    secret_spans: list[tuple[int, int]] = []
    for rule in RULES:
        if not rule.applies_to(filename):
            continue
        for match in rule.pattern.finditer(text):
            if rule.check is not None and not rule.check(match, text):
                continue
            span = match.span(rule.secret) if rule.secret else None
            if span is not None:
                if _overlaps(span, secret_spans):
                    continue  # already reported by a more specific rule
                secret_spans.append(span)
            line = text.count("\n", 0, match.start()) + 1
            hits.append(Hit(rule, line, match.start(), span))
    hits.sort(key=lambda h: (h.start, h.rule.id))
    return hits


def excerpt(text: str, hit: Hit, secret_spans: list[tuple[int, int]]) -> str:
    """The hit's line with every secret on it masked, cut to :data:`EXCERPT_CHARS`."""
    line_start = text.rfind("\n", 0, hit.start) + 1
    line_end = text.find("\n", hit.start)
    line_end = len(text) if line_end < 0 else line_end
    pieces, cursor, column = [], line_start, hit.start - line_start
    for start, end in sorted(secret_spans):
        if end <= line_start or start >= line_end:
            continue
        start, end = max(start, line_start), min(end, line_end)
        pieces.append(text[cursor:start])
        pieces.append(MASK)
        if end <= hit.start:
            column -= (end - start) - len(MASK)
        cursor = end
    pieces.append(text[cursor:line_end])
    masked = "".join(pieces).strip("\r")
    if len(masked) <= EXCERPT_CHARS:
        return masked.strip()
    begin = max(0, min(column - 40, len(masked) - EXCERPT_CHARS))
    return masked[begin : begin + EXCERPT_CHARS].strip()
