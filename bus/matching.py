"""RabbitMQ topic-exchange matching: words split on '.', '*' is exactly one word,
'#' is zero or more words."""

from __future__ import annotations

from functools import lru_cache


@lru_cache(maxsize=4096)
def topic_matches(pattern: str, routing_key: str) -> bool:
    """True when ``routing_key`` matches binding ``pattern`` as RabbitMQ decides it."""
    return _match(tuple(pattern.split(".")), tuple(routing_key.split(".")))


def _match(pat: tuple[str, ...], key: tuple[str, ...]) -> bool:
    # Iterative with memo on (i, j) so that many '#' stay linear-ish.
    seen: set[tuple[int, int]] = set()
    stack = [(0, 0)]
    while stack:
        i, j = stack.pop()
        if (i, j) in seen:
            continue
        seen.add((i, j))
        if i == len(pat):
            if j == len(key):
                return True
            continue
        word = pat[i]
        if word == "#":
            # '#' swallows zero words (advance pattern) or one more word (advance key).
            stack.append((i + 1, j))
            if j < len(key):
                stack.append((i, j + 1))
        elif j < len(key) and (word == "*" or word == key[j]):
            stack.append((i + 1, j + 1))
    return False


def validate_pattern(pattern: str) -> str:
    """Reject binding patterns RabbitMQ would accept but that are surely mistakes."""
    if not pattern or any(w == "" for w in pattern.split(".")):
        raise ValueError(f"invalid topic pattern {pattern!r}: empty word")
    for word in pattern.split("."):
        if word not in {"*", "#"} and ("*" in word or "#" in word):
            raise ValueError(f"invalid topic pattern {pattern!r}: '*' and '#' must be whole words")
    return pattern
