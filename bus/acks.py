"""Coalescing of ``basic.ack`` frames on one AMQP channel.

Settling a delivery only records it; one writer task per busy period writes what was
recorded during the event-loop turn(s) it waited for: the longest run of settled
delivery tags just above the channel's watermark is acked by ONE
``basic.ack(multiple=True)``; tags settled ahead of a still-running delivery are acked
one by one in the same write, so a slow handler never holds other deliveries' prefetch
slots. A multiple ack never covers a tag that is not settled: the run is built from
consecutive delivery-tag integers that were each acked or nacked here, and its top tag
is always one not yet sent (RabbitMQ rejects a multiple ack whose tag is unknown).
Nacks (rare: requeue at shutdown, or when the broker refuses a copy) go out singly,
before the acks of the same write. There is one writer, so frames are queued in the
order they were decided.

Nothing waits for the write per delivery; :meth:`ChannelAcks.drain` waits for all of
them, and the broker calls it before closing a channel or the connection. If the
channel dies first, the broker requeues whatever was not acked (the inbox absorbs the
redelivery of anything that had completed).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from bus.errors import describe

log = logging.getLogger("codebus.bus.acks")


class ChannelAcks:
    """Acks of deliveries from one channel (delivery tags restart on a new channel)."""

    def __init__(self, channel: Any) -> None:
        self.channel = channel  # aiormq channel: basic_ack / basic_nack
        self._watermark = 0  # every tag <= watermark is settled
        # Settled runs above the watermark, as intervals (start -> end, end -> start):
        # as many as there are unsettled deliveries below them, however many settle.
        self._run_end: dict[int, int] = {}
        self._run_start: dict[int, int] = {}
        self._acks: list[int] = []  # recorded, not yet written
        self._nacks: list[tuple[int, bool]] = []  # (tag, requeue)
        self._writer: asyncio.Task[None] | None = None

    @property
    def runs(self) -> int:
        """Runs of settled tags waiting above an unsettled one."""
        return len(self._run_end)

    def ack(self, tag: int) -> None:
        """Record an ack of ``tag``; it is written at the end of this event-loop turn."""
        self._acks.append(tag)
        self._wake()

    def nack(self, tag: int, *, requeue: bool) -> None:
        """Record a nack of ``tag`` (written singly, before this turn's acks)."""
        self._nacks.append((tag, requeue))
        self._wake()

    async def drain(self) -> None:
        """Wait until everything recorded so far is written (or the write failed)."""
        while self._writer is not None:
            await asyncio.shield(self._writer)

    def _wake(self) -> None:
        if self._writer is None:
            # A new task first runs on the next loop iteration: this turn's other
            # settlements join the same write.
            self._writer = asyncio.get_running_loop().create_task(self._write_all())

    def _settle(self, tag: int) -> None:
        start = end = tag
        if tag - 1 in self._run_start:  # a run ends just below: extend it
            start = self._run_start.pop(tag - 1)
            del self._run_end[start]
        if tag + 1 in self._run_end:  # a run starts just above: join it
            end = self._run_end.pop(tag + 1)
            del self._run_start[end]
        if start == self._watermark + 1:
            self._watermark = end
        else:
            self._run_end[start] = end
            self._run_start[end] = start

    async def _write_all(self) -> None:
        try:
            while self._acks or self._nacks:
                nacks, self._nacks = self._nacks, []
                for tag, requeue in nacks:
                    await self.channel.basic_nack(tag, requeue=requeue, wait=False)
                    self._settle(tag)
                tags, self._acks = self._acks, []
                for tag in tags:
                    self._settle(tag)
                # The highest tag of this write inside the settled run acks all below it.
                top = max((t for t in tags if t <= self._watermark), default=0)
                frames = ([(top, True)] if top else []) + [
                    (t, False) for t in sorted(tags) if t > self._watermark
                ]
                for i, (tag, multiple) in enumerate(frames):
                    # The connection's write queue is FIFO: once the last frame of the
                    # write is drained, all of them are written.
                    last = i == len(frames) - 1 and not (self._acks or self._nacks)
                    await self.channel.basic_ack(tag, multiple=multiple, wait=last)
        except Exception as exc:  # the channel died: the broker requeues what was unacked
            dropped = len(self._acks) + len(self._nacks)
            self._acks, self._nacks = [], []
            log.warning(
                "acks lost with the channel (%s); %d more dropped; the broker redelivers them",
                describe(exc),
                dropped,
            )
        finally:
            self._writer = None
