"""Engine helpers: wake-up hops through the delay tiers."""

from __future__ import annotations

import pytest

from flows.engine import hop_delay
from schemas.names import delay_tier


@pytest.mark.parametrize(
    ("delay", "hop"),
    [(0.0, 0.0), (0.05, 0.05), (0.127, 0.127), (0.2, 0.128), (1.0, 0.512), (300, 262.144),
     (10_000, 4194.304)],
)  # fmt: skip
def test_hops_are_powers_of_two_milliseconds(delay: float, hop: float) -> None:
    assert hop_delay(delay) == pytest.approx(hop)


def test_a_hop_is_the_smallest_delay_of_its_tier() -> None:
    # Every wake-up of one tier carries the same TTL, so none waits behind a longer one.
    for ms in range(128, 200_000, 997):
        hop_ms = round(hop_delay(ms / 1000) * 1000)
        assert hop_ms <= ms and 2 ** delay_tier(hop_ms) == hop_ms
        assert ms - hop_ms < hop_ms  # the rest is shorter: at most log2 hops
