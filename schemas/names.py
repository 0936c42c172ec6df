"""Every exchange, queue, header and Redis key name that codebus uses, in one place.

It sits in schemas/ (pure data, no I/O) because both bus/ and tools/ need Redis key
names and neither may import the other. A :class:`Names` instance carries a prefix so
that tests (and installations sharing one broker) get disjoint topologies; production
uses the default, ``codebus``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

# AMQP headers the runtime reads and writes.
HEADER_ATTEMPT = "x-codebus-attempt"
HEADER_DEAD_REASON = "x-codebus-dead-reason"
HEADER_DEAD_KIND = "x-codebus-dead-kind"
HEADER_ORIGIN_QUEUE = "x-codebus-queue"
HEADER_DEAD_AT = "x-codebus-dead-at"
# Not "x-" prefixed: a headers exchange ignores x- headers when it matches.
HEADER_DELAY_TIER = "codebus-delay-tier"
HEADER_TRACEPARENT = "traceparent"

#: Delay tiers are powers of two in milliseconds: tier n holds delays in [2^n, 2^(n+1)).
MIN_DELAY_TIER = 6  # 64 ms
MAX_DELAY_TIER = 22  # ~70 minutes


def delay_tier(delay_ms: int) -> int:
    """The tier whose queue holds a message delayed by ``delay_ms``."""
    if delay_ms <= 1:
        return MIN_DELAY_TIER
    return max(MIN_DELAY_TIER, min(MAX_DELAY_TIER, int(math.log2(delay_ms))))


@dataclass(frozen=True)
class Names:
    """Names of the broker topology and Redis keys, under one prefix."""

    prefix: str = "codebus"
    redis_prefix: str = field(default="")

    # --- exchanges ---------------------------------------------------------------
    @property
    def events_exchange(self) -> str:
        """Topic exchange every event is published to; routing key = event type."""
        return f"{self.prefix}.events"

    @property
    def retry_exchange(self) -> str:
        """Direct exchange binding each subscription queue under its own name."""
        return f"{self.prefix}.retry"

    @property
    def delay_exchange(self) -> str:
        """Headers exchange routing a delayed message to its tier queue."""
        return f"{self.prefix}.delay"

    @property
    def dead_exchange(self) -> str:
        """Fanout exchange in front of the dead-letter queue."""
        return f"{self.prefix}.dlx"

    # --- queues ------------------------------------------------------------------
    def subscription_queue(self, name: str) -> str:
        """Durable queue owned by one subscription."""
        return f"{self.prefix}.q.{name}"

    def delay_queue(self, tier: int) -> str:
        """Queue holding messages until their per-message TTL sends them back."""
        return f"{self.prefix}.delay.{tier}"

    @property
    def dead_letter_queue(self) -> str:
        """Where events that cannot be processed wait, with their reason."""
        return f"{self.prefix}.dead"

    # --- redis -------------------------------------------------------------------
    @property
    def _r(self) -> str:
        return self.redis_prefix or self.prefix

    def inbox_key(self, subscription: str, event_id: str) -> str:
        """Idempotency claim / done-mark of one event in one subscription."""
        return f"{self._r}:inbox:{subscription}:{event_id}"

    def breaker_key(self, server: str) -> str:
        """Circuit-breaker state of one tool server."""
        return f"{self._r}:breaker:{server}"

    def breaker_probe_key(self, server: str) -> str:
        """Half-open probe lease of one tool server's breaker (a PX key: one probe at a time)."""
        return f"{self._r}:breaker-probe:{server}"

    def cache_key(self, tool: str, digest: str) -> str:
        """Cached result of a read-only tool call; the tool name stays readable so that
        per-tool invalidation can find its keys."""
        return f"{self._r}:cache:{tool}:{digest}"

    def cache_generation_key(self, server: str) -> str:
        """Counter bumped by every write call to ``server``; cached reads of that server
        embed it in their keys, so a write makes them unreachable at once."""
        return f"{self._r}:cache-gen:{server}"

    def cache_pattern(self, tool: str) -> str:
        """SCAN pattern matching every cached result of ``tool``."""
        return f"{self._r}:cache:{tool}:*"

    @property
    def audit_stream(self) -> str:
        """Redis stream of tool-call audit records."""
        return f"{self._r}:audit"

    def replay_key(self, source: str, webhook_id: str) -> str:
        """Marks an inbound webhook id as seen (replay protection)."""
        return f"{self._r}:webhook-seen:{source}:{webhook_id}"

    def replay_body_key(self, source: str, body_sha256: str) -> str:
        """Marks an inbound webhook body as seen, whatever delivery id it came with."""
        return f"{self._r}:webhook-body:{source}:{body_sha256}"

    def idempotency_key(self, api_key: str, key_sha256: str) -> str:
        """Claim of one ``Idempotency-Key`` (hashed) of one API key on ``POST /events``."""
        return f"{self._r}:idempotency:{api_key}:{key_sha256}"

    @property
    def deliveries_key(self) -> str:
        """Hash of outbound webhook delivery records."""
        return f"{self._r}:webhook-deliveries"

    @property
    def deliveries_index_key(self) -> str:
        """Sorted set of delivery record ids by last update time (bounds the hash)."""
        return f"{self._r}:webhook-deliveries:index"

    @property
    def event_log_stream(self) -> str:
        """Redis stream of every event seen by the audit unit."""
        return f"{self._r}:events"

    def flow_key(self, flow_id: str) -> str:
        """Durable state document of one deployment flow (id minted by codebus)."""
        return f"{self._r}:flow:{flow_id}"

    @property
    def flows_index_key(self) -> str:
        """Sorted set of flow ids by creation time (``codebus deployments list``)."""
        return f"{self._r}:flows"

    @property
    def flows_due_key(self) -> str:
        """Sorted set of flow ids by their earliest timer (the sweeper's work list)."""
        return f"{self._r}:flows:due"

    @property
    def flows_sweep_key(self) -> str:
        """Marks the sweep chain as running (a PX key the chain refreshes)."""
        return f"{self._r}:flows:sweep"

    @property
    def flow_records_outbox_key(self) -> str:
        """Hash of repository records (journal + summary) not yet written to S3."""
        return f"{self._r}:flows:records-outbox"

    #: Subscription whose queue receives flow wake-ups and sweeps (sent, not published).
    FLOW_WAKE_SUBSCRIPTION = "deploy.flow-wake"
    #: Subscription whose queue runs the deploy facade's pipeline steps (sent, not published).
    DEPLOY_STEP_SUBSCRIPTION = "deploy.steps"

    def workflow_key(self, workflow_id: str) -> str:
        """State of one workflow (pipeline or saga run)."""
        return f"{self._r}:workflow:{workflow_id}"

    def workflow_awaits_key(self, ref: str) -> str:
        """Which run waits for a deployment flow (by its id or its request's event id)."""
        return f"{self._r}:workflow-awaits:{ref}"

    @property
    def workflows_index_key(self) -> str:
        """Sorted set of pipeline and saga run ids by creation time."""
        return f"{self._r}:workflows"

    @property
    def workflows_due_key(self) -> str:
        """Sorted set of runs by when their pending step is due (for a sweep)."""
        return f"{self._r}:workflows:due"

    @property
    def workflows_sweep_key(self) -> str:
        """Marks the runs' sweep chain as running (a PX key the chain refreshes)."""
        return f"{self._r}:workflows:sweep"

    #: Subscription whose queue receives the runs' ``workflow.step_due`` (sent, not published).
    WORKFLOW_STEP_SUBSCRIPTION = "workflows.steps"


DEFAULT_NAMES = Names()
