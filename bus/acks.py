"""Coalescing of ``basic.ack`` frames on one AMQP channel.

Acks requested during one event-loop turn go out together at the end of it: the
longest run of settled delivery tags just above the channel's watermark is acked by ONE
``basic.ack(multiple=True)``; tags settled ahead of a still-running delivery are acked
one by one in the same write, so a slow handler never holds other deliveries' prefetch
slots. A multiple ack never covers a tag that is not settled: the run is built from
consecutive delivery-tag integers that were each acked or nacked here, and its top tag
is always one not yet sent (RabbitMQ rejects a multiple ack whose tag is unknown).

Writes are serialised (one flush's frames are all queued before the next flush's), so
a multiple ack never overtakes the single ack of a tag below it. Nacks are rare
(requeue at shutdown, or when the broker refuses a copy) and go out at once,
individually; the tag joins the settled run only after its frame is written.
"""

from __future__ import annotations

import asyncio
from typing import Any


class ChannelAcks:
    """Acks of deliveries from one channel (delivery tags restart on a new channel)."""

    def __init__(self, channel: Any) -> None:
        self.channel = channel  # aiormq channel: basic_ack / basic_nack
        self._watermark = 0  # every tag <= watermark is settled
        # Settled runs above the watermark, as intervals (start -> end, end -> start):
        # as many as there are unsettled deliveries below them, however many settle.
        self._run_end: dict[int, int] = {}
        self._run_start: dict[int, int] = {}
        self._pending: list[int] = []  # acks requested, not yet written
        self._flushed: asyncio.Future[None] | None = None
        self._writing = asyncio.Lock()
        self._tasks: set[asyncio.Task[None]] = set()  # the loop keeps only weak references
        self.frames = 0  # ack frames written (for tests and benchmarks)

    async def ack(self, tag: int) -> None:
        """Ack ``tag``; returns once its frame is written (raises what the channel raises)."""
        self._pending.append(tag)
        if self._flushed is None:
            loop = asyncio.get_running_loop()
            self._flushed = loop.create_future()
            loop.call_soon(self._flush)
        await asyncio.shield(self._flushed)

    async def nack(self, tag: int, *, requeue: bool) -> None:
        """Nack ``tag`` alone, at once."""
        async with self._writing:
            await self.channel.basic_nack(tag, requeue=requeue)
        self._settle(tag)

    @property
    def runs(self) -> int:
        """Runs of settled tags waiting above an unsettled one."""
        return len(self._run_end)

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

    def _flush(self) -> None:
        tags, self._pending = self._pending, []
        done, self._flushed = self._flushed, None
        assert done is not None
        for tag in tags:
            self._settle(tag)
        # The highest tag of this flush inside the settled run acks everything below it.
        top = max((t for t in tags if t <= self._watermark), default=0)
        singles = sorted(t for t in tags if t > self._watermark)
        task = asyncio.get_running_loop().create_task(self._write(top, singles))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        task.add_done_callback(lambda t: _resolve(done, t))

    async def _write(self, top: int, singles: list[int]) -> None:
        frames = ([(top, True)] if top else []) + [(t, False) for t in singles]
        self.frames += len(frames)
        async with self._writing:
            for i, (tag, multiple) in enumerate(frames):
                # The connection's write queue is FIFO: once the last frame is drained,
                # all of them are written.
                last = i == len(frames) - 1
                await self.channel.basic_ack(tag, multiple=multiple, wait=last)


def _resolve(future: asyncio.Future[None], task: asyncio.Task[None]) -> None:
    if future.done():
        return
    if task.cancelled():
        future.cancel()
    elif (exc := task.exception()) is not None:
        future.set_exception(exc)
    else:
        future.set_result(None)
