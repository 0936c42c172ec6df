"""Property test: the Redis breaker follows its state machine under interleaved workers.

Hypothesis drives three workers (each with its own Redis connection) through random
interleavings of acquire / report-success / report-failure / give-up / wait, and checks
every answer against a model of the documented state machine, including the invariant
that at most one worker holds the half-open probe at any time.

Waiting out the reset timeout is simulated by the ``elapse`` rule, which moves the
stored deadline into the past (the examples in test_breaker.py cover real
expiry on Redis time); that keeps the run fast and every answer exact.
"""

from __future__ import annotations

import asyncio
import uuid

import redis.asyncio as aioredis
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    rule,
    run_state_machine_as_test,
)

from schemas.names import Names
from tools.guards.breaker import Admission, BreakerStore

WORKERS = 3
THRESHOLD = 2
RESET = 60.0  # seconds open before a probe; only ``elapse`` ends it within a run
SERVER = "srv"


class BreakerMachine(RuleBasedStateMachine):
    """Model: state, consecutive failures, when it opened, who holds what admission."""

    redis_url = ""

    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.names = Names(prefix=f"t{uuid.uuid4().hex[:10]}")
        self.clients = [aioredis.Redis.from_url(self.redis_url) for _ in range(WORKERS)]
        self.stores = [BreakerStore(c, self.names) for c in self.clients]
        self.state = "closed"  # closed | open | due (open, deadline passed) | half_open
        self.failures = 0
        self.held: dict[int, Admission] = {}

    def run(self, coro):
        return self.loop.run_until_complete(coro)

    def teardown(self) -> None:
        async def cleanup() -> None:
            keys = [k async for k in self.clients[0].scan_iter(match=f"{self.names.prefix}:*")]
            if keys:
                await self.clients[0].delete(*keys)
            for client in self.clients:
                await client.aclose()

        self.run(cleanup())
        self.loop.close()

    @initialize(
        start=st.sampled_from(["closed", "open", "due", "half_open"]), straggler=st.booleans()
    )
    def start_in(self, start: str, straggler: bool) -> None:
        """Begin in any state (reached through the API), so short runs cover them all;
        a straggler is a call of worker 2 admitted while closed that reports later."""
        if straggler:
            self._acquire(2)
        if start == "closed":
            return
        for _ in range(THRESHOLD):
            self.call(0, "fail")
        if start != "open":
            self.elapse()
        if start == "half_open":
            self._acquire(1)

    @rule(worker=st.integers(0, WORKERS - 1))
    def acquire(self, worker: int) -> None:
        if worker in self.held:
            return
        self._acquire(worker)

    @rule(worker=st.integers(0, WORKERS - 1), outcome=st.sampled_from(["ok", "fail", "neutral"]))
    def call(self, worker: int, outcome: str) -> None:
        """A whole call (acquire, then report) in one step, so that states are reached in
        few steps; the separate rules interleave the halves of concurrent calls."""
        if worker in self.held:
            return
        self._acquire(worker)
        self.report(worker, outcome)

    def _acquire(self, worker: int) -> None:
        admission = self.run(self.stores[worker].acquire(SERVER, lease_seconds=30))
        probe_taken = any(a.decision == "probe" for a in self.held.values())
        if self.state == "closed":
            assert admission.decision == "allow"
        elif self.state == "open":
            assert admission.decision == "reject"
            assert RESET - 5 < admission.retry_after <= RESET
        else:  # due or half-open: one probe at a time
            assert admission.decision == ("reject" if probe_taken else "probe")
            if admission.decision == "probe":
                self.state = "half_open"
        if admission.decision != "reject":
            self.held[worker] = admission

    @rule(pick=st.integers(0, WORKERS - 1), outcome=st.sampled_from(["ok", "fail", "neutral"]))
    def report_any(self, pick: int, outcome: str) -> None:
        """Some worker holding an admission reports (the pick always lands on one)."""
        if self.held:
            holders = sorted(self.held)
            self.report(holders[pick % len(holders)], outcome)

    def report(self, worker: int, outcome: str) -> None:
        admission = self.held.pop(worker, None)
        if admission is None:
            return
        store = self.stores[worker]
        if outcome == "ok":
            self.run(store.success(SERVER, admission))
        elif outcome == "fail":
            self.run(store.failure(SERVER, admission, threshold=THRESHOLD, reset_timeout=RESET))
        else:
            self.run(store.release(SERVER, admission))
        if admission.decision == "probe":
            if outcome == "ok":
                self.state, self.failures = "closed", 0
            elif outcome == "fail":
                self.failures += 1
                self.state = "open"
            # neutral: stays half-open, and the next caller probes
        elif self.state == "closed":
            if outcome == "ok":
                self.failures = 0
            elif outcome == "fail":
                self.failures += 1
                if self.failures >= THRESHOLD:
                    self.state = "open"

    @rule()
    def elapse(self) -> None:
        """The reset timeout passes (the stored deadline moves into the past)."""
        key = self.names.breaker_key(SERVER)
        if self.run(self.clients[0].hget(key, "open_until")) is not None:
            self.run(self.clients[0].hset(key, "open_until", 0))
        if self.state == "open":
            self.state = "due"

    @invariant()
    def redis_agrees_with_model(self) -> None:
        status = self.run(self.stores[0].status(SERVER))
        assert status.failures == self.failures
        probes = [w for w, a in self.held.items() if a.decision == "probe"]
        assert len(probes) <= 1
        assert status.probing == bool(probes)
        if self.state == "closed":
            assert status.state == "closed"
        elif self.state == "half_open":
            assert status.state == "half-open"
        elif self.state == "due":
            assert status.state == "half-open" and status.retry_after == 0
        else:
            assert status.state == "open"


def test_breaker_state_machine_under_interleaved_workers(redis_url: str) -> None:
    BreakerMachine.redis_url = redis_url
    run_state_machine_as_test(
        BreakerMachine,
        settings=settings(
            max_examples=100,
            stateful_step_count=20,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow],
        ),
    )
