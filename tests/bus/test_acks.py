"""Ack coalescing against a channel that enforces RabbitMQ's ack rules: a multiple ack
must name an unacked tag and settles every unacked tag up to it; a single ack or nack
of an unknown tag is a channel error. The channel also checks that no ack ever covers
a delivery the application has not settled yet."""

from __future__ import annotations

import asyncio
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bus.acks import ChannelAcks


class StrictChannel:
    def __init__(self, delivered: int) -> None:
        self.unacked = list(range(1, delivered + 1))
        self.app_settled: set[int] = set()
        self.frames: list[tuple[str, int, bool]] = []
        self.requeued: list[int] = []

    def _take(self, tag: int, multiple: bool) -> list[int]:
        if tag not in self.unacked:
            raise AssertionError(f"PRECONDITION_FAILED - unknown delivery tag {tag}")
        covered = [t for t in self.unacked if t <= tag] if multiple else [tag]
        early = set(covered) - self.app_settled
        assert not early, f"ack of tag {tag} covered unsettled deliveries {sorted(early)}"
        self.unacked = [t for t in self.unacked if t not in covered]
        return covered

    async def basic_ack(self, tag: int, multiple: bool = False, wait: bool = True) -> None:
        self.frames.append(("ack", tag, multiple))
        self._take(tag, multiple)
        await asyncio.sleep(0)  # the write yields, like aiormq's drain

    async def basic_nack(
        self, tag: int, multiple: bool = False, requeue: bool = True, wait: bool = True
    ) -> None:
        self.frames.append(("nack", tag, multiple))
        self.requeued += self._take(tag, multiple)
        await asyncio.sleep(0)


async def settle(acks: ChannelAcks, channel: StrictChannel, tag: int, nack: bool) -> None:
    """Settle like a delivery does (record, return), then let the write happen."""
    channel.app_settled.add(tag)
    if nack:
        acks.nack(tag, requeue=True)
    else:
        acks.ack(tag)
    await acks.drain()


async def test_in_order_completions_take_one_frame_per_turn():
    channel = StrictChannel(50)
    acks = ChannelAcks(channel)
    await asyncio.gather(*(settle(acks, channel, t, False) for t in range(1, 51)))
    assert channel.unacked == []
    assert channel.frames == [("ack", 50, True)]


async def test_a_slow_head_does_not_hold_the_others():
    channel = StrictChannel(10)
    acks = ChannelAcks(channel)
    await asyncio.gather(*(settle(acks, channel, t, False) for t in range(2, 11)))
    assert channel.unacked == [1]  # every finished delivery freed its prefetch slot
    await settle(acks, channel, 1, False)
    assert channel.unacked == []
    # later, the run 1..10 is settled: tag 1 alone is the only one still unacked
    assert channel.frames[-1] == ("ack", 1, True)


async def test_nack_is_sent_alone_and_joins_the_settled_run():
    channel = StrictChannel(4)
    acks = ChannelAcks(channel)
    await settle(acks, channel, 2, True)
    await asyncio.gather(settle(acks, channel, 1, False), settle(acks, channel, 3, False))
    await settle(acks, channel, 4, False)
    assert channel.unacked == [] and channel.requeued == [2]
    assert ("nack", 2, False) in channel.frames
    assert channel.frames[-1] == ("ack", 4, True)


async def test_a_dead_channel_is_logged_once_and_drain_returns(caplog):
    class Closed(StrictChannel):
        async def basic_ack(self, tag: int, multiple: bool = False, wait: bool = True) -> None:
            raise ConnectionError("channel closed")

    channel = Closed(3)
    acks = ChannelAcks(channel)
    await asyncio.gather(*(settle(acks, channel, t, False) for t in (1, 2, 3)))
    assert channel.unacked == [1, 2, 3]  # the broker requeues them with the channel
    lost = [r for r in caplog.records if "acks lost with the channel" in r.getMessage()]
    assert len(lost) == 1


async def test_settling_records_and_drain_writes():
    """A delivery's ack returns at once; the frame is written at the end of the turn,
    and drain() (called before a channel is closed) waits for it."""
    channel = StrictChannel(2)
    acks = ChannelAcks(channel)
    channel.app_settled.update({1, 2})
    acks.ack(1)
    acks.ack(2)
    assert channel.frames == []
    await acks.drain()
    assert channel.frames == [("ack", 2, True)] and channel.unacked == []


@settings(max_examples=150, deadline=None)
@given(
    n=st.integers(1, 40),
    seed=st.integers(0, 2**32 - 1),
    nack_share=st.sampled_from([0.0, 0.1, 0.5]),
)
def test_any_completion_order_settles_each_tag_once(n: int, seed: int, nack_share: float):
    rng = random.Random(seed)
    order = list(range(1, n + 1))
    rng.shuffle(order)
    nacked = {t for t in order if rng.random() < nack_share}

    async def scenario() -> StrictChannel:
        channel = StrictChannel(n)
        acks = ChannelAcks(channel)
        pending = []
        for tag in order:  # deliveries finish in random order, in random-sized turns
            pending.append(asyncio.ensure_future(settle(acks, channel, tag, tag in nacked)))
            if rng.random() < 0.3:
                await asyncio.sleep(0)
        await asyncio.gather(*pending)
        return channel

    channel = asyncio.run(scenario())
    assert channel.unacked == []
    assert sorted(channel.requeued) == sorted(nacked)
    assert len(channel.frames) <= n


@pytest.mark.parametrize("first", [1, 3])
async def test_watermark_only_moves_over_settled_tags(first: int):
    channel = StrictChannel(3)
    acks = ChannelAcks(channel)
    await settle(acks, channel, first, False)
    assert channel.unacked == [t for t in (1, 2, 3) if t != first]


async def test_bookkeeping_stays_small_behind_a_stuck_delivery():
    """Thousands of deliveries settle while tag 1 hangs: one run is remembered, not a
    set of thousands of tags."""
    channel = StrictChannel(5001)
    acks = ChannelAcks(channel)
    for start in range(2, 5002, 500):
        await asyncio.gather(
            *(settle(acks, channel, t, False) for t in range(start, min(start + 500, 5002)))
        )
    assert acks.runs == 1 and channel.unacked == [1]
    await settle(acks, channel, 1, False)
    assert acks.runs == 0 and channel.unacked == []
