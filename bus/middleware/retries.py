"""Turns handler failures into delayed retries or, after the last attempt, dead letters."""

from __future__ import annotations

from bus.middleware.base import Middleware, Processing
from bus.outcome import DeadLetter, Failed, Outcome, RetryLater
from bus.retry import RetryPolicy


def describe_error(error: BaseException) -> str:
    """``Type: message`` on one line, bounded."""
    text = f"{type(error).__name__}: {error}".replace("\n", " ")
    return text[:1000]


class RetriesMiddleware(Middleware):
    """Retryable failures come back after exponential backoff with jitter (through the
    broker's delay queues, the attempt count in a header); permanent failures and the
    last attempt go to the dead-letter queue with their reason."""

    def __init__(self, policy: RetryPolicy | None = None) -> None:
        self.policy = policy or RetryPolicy()

    async def after_process(self, p: Processing, outcome: Outcome) -> Outcome:
        if not isinstance(outcome, Failed):
            return outcome
        reason = describe_error(outcome.error)
        if not outcome.retryable:
            return DeadLetter("rejected", reason)
        max_attempts = p.subscription.max_attempts or self.policy.max_attempts
        if p.attempt >= max_attempts:
            return DeadLetter("exhausted", f"gave up after {p.attempt} attempts: {reason}")
        delay = outcome.delay if outcome.delay is not None else self.policy.delay(p.attempt)
        return RetryLater(delay=delay, attempt=p.attempt + 1, reason=reason)
