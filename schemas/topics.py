"""Event types and the topic patterns that select them: the one matcher and validator
used by the bus (``Router.subscribe``, the brokers' bindings), the gateway
configuration and the CLI (``codebus tail``).

Matching is RabbitMQ's topic-exchange rule: words split on ``.``, ``*`` is exactly one
word, ``#`` is zero or more words. Validation is stricter than RabbitMQ: a pattern word
must be able to match a word of an event type (``[a-z][a-z0-9_]*``, the envelope's rule),
so ``Deployment.*`` or ``deployment.requested-v2`` is refused where it is written instead
of binding a queue that never receives anything.
"""

from __future__ import annotations

import re
from functools import lru_cache

#: One word of an event type: lower-case letter, then letters, digits or ``_``.
EVENT_TYPE_WORD = r"[a-z][a-z0-9_]*"
#: A whole event type: two or more words joined by ``.`` (``deployment.requested``).
EVENT_TYPE_RE = re.compile(rf"^{EVENT_TYPE_WORD}(\.{EVENT_TYPE_WORD})+$")
_PATTERN_WORD = re.compile(rf"^({EVENT_TYPE_WORD}|\*|#)$")


@lru_cache(maxsize=4096)
def topic_matches(pattern: str, routing_key: str) -> bool:
    """True when ``routing_key`` matches binding ``pattern`` as RabbitMQ decides it."""
    words = routing_key.split(".")
    # reachable[j]: the pattern prefix consumed so far can end right before word j.
    # Dynamic programming keeps many '#' linear instead of exponential.
    reachable = [True] + [False] * len(words)
    for p in pattern.split("."):
        if p == "#":
            for j in range(1, len(words) + 1):
                reachable[j] = reachable[j] or reachable[j - 1]
        else:
            reachable = [False] + [
                reachable[j] and (p == "*" or p == words[j]) for j in range(len(words))
            ]
    return reachable[len(words)]


def validate_pattern(pattern: str) -> str:
    """Return ``pattern`` if it is a topic pattern some event type can match; otherwise
    raise ``ValueError`` naming the pattern and its first bad word."""
    if not isinstance(pattern, str) or not pattern:
        raise ValueError(f"invalid topic pattern {pattern!r}: empty")
    for word in pattern.split("."):
        if not _PATTERN_WORD.match(word):
            why = (
                "empty word"
                if not word
                else f"word {word!r} is not '*', '#' or lower-case letters, digits and '_'"
                " starting with a letter, so no event type matches it"
            )
            raise ValueError(f"invalid topic pattern {pattern!r}: {why}")
    return pattern
