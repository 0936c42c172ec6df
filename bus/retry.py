"""Retry policy: exponential backoff with jitter and a bounded number of attempts."""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True)
class RetryPolicy:
    """``delay(n)`` for the n-th failed attempt is ``base * multiplier**(n-1)``, capped at
    ``max_delay``, then spread by +/- ``jitter`` (a fraction) so that a burst of failures
    does not come back as a burst. After ``max_attempts`` attempts the event is
    dead-lettered."""

    max_attempts: int = 5
    base_delay: float = 1.0
    multiplier: float = 2.0
    max_delay: float = 300.0
    jitter: float = 0.2

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if self.base_delay < 0 or self.max_delay < 0 or self.multiplier < 1:
            raise ValueError("delays must be >= 0 and multiplier >= 1")
        if not 0 <= self.jitter < 1:
            raise ValueError("jitter must be in [0, 1)")

    def delay(self, failed_attempt: int, rng: random.Random | None = None) -> float:
        """Seconds to wait before attempt ``failed_attempt + 1``."""
        nominal = min(self.max_delay, self.base_delay * self.multiplier ** (failed_attempt - 1))
        spread = (rng or random).uniform(-self.jitter, self.jitter)
        return max(0.0, nominal * (1 + spread))
