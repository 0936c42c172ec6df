"""Coalescing of small Redis Lua operations into few round trips, pipelined.

Operations are Lua functions ``function(key, a)`` on one key with a fixed number of
arguments. The calls made during one event-loop turn go out together at the end of that
turn as ONE ``EVALSHA`` of a script that dispatches on an op code per key, so the
inbox's claims, lease extensions and done-marks of dozens of deliveries cost one command
instead of one per message. Batches are pipelined on the batcher's own connection: a
batch is written as soon as its turn ends, without waiting for the replies of the
batches already in flight (Redis answers them in order; one reader task matches the
replies to their batches). A call therefore waits for one round trip of its own, never
behind another batch - a claim never queues behind a batch of done-marks. Only when
``max_in_flight`` batches are unanswered do new calls wait, and then they coalesce into
one larger batch (under overload, batches grow by themselves). Each batch runs
atomically. Keys travel inside the script's argument, so this needs a standalone Redis
(not Cluster).
"""

from __future__ import annotations

import asyncio
import hashlib
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

# The whole batch travels as ONE argument: fields separated by the ASCII unit
# separator (31), (width + 2) fields per call: op code, key, arguments. Encoding one
# string is far cheaper for the client than one protocol argument per field.
SEP = "\x1f"
_DISPATCH = """
local s, f, i = ARGV[1], {}, 1
while true do
  local j = string.find(s, '\\31', i, true)
  if not j then f[#f + 1] = string.sub(s, i); break end
  f[#f + 1] = string.sub(s, i, j - 1)
  i = j + 1
end
local width = tonumber(ARGV[2])
local per = width + 2
local out = {}
for r = 0, #f / per - 1 do
  local base = r * per
  local a = {}
  for j = 1, width do a[j] = f[base + 2 + j] end
  out[r + 1] = OPS[tonumber(f[base + 1])](f[base + 2], a)
end
return out
"""


@dataclass(frozen=True)
class LuaOp:
    """``function(key, a) ... end`` taking ``nargs`` arguments in ``a``."""

    function: str
    nargs: int


class ScriptBatcher:
    """``await batcher.call(op_name, key, *args)``, batched across callers."""

    def __init__(
        self,
        redis: aioredis.Redis,
        ops: Mapping[str, LuaOp],
        *,
        max_batch: int = 512,
        max_in_flight: int = 8,
    ) -> None:
        self.redis = redis
        self.max_batch = max_batch
        self.max_in_flight = max_in_flight
        self._codes = {name: i + 1 for i, name in enumerate(ops)}
        self._nargs = {name: op.nargs for name, op in ops.items()}
        self._width = max(op.nargs for op in ops.values())
        # Per op: (number of arguments, record prefix "code<SEP>", padding of the unused
        # argument fields): a call's record is built with one join.
        self._layout = {
            name: (op.nargs, f"{self._codes[name]}{SEP}", SEP * (self._width - op.nargs))
            for name, op in ops.items()
        }
        table = ",\n".join(op.function.strip() for op in ops.values())
        self.source = f"local OPS = {{\n{table}\n}}\n{_DISPATCH}"
        self.sha = hashlib.sha1(self.source.encode()).hexdigest()
        self._pipe: _Pipe | None = None  # the batcher's own connection, while it works
        self._queue: list[tuple[str, asyncio.Future[Any]]] = []  # calls not sent yet
        self._resend: list[_Batch] = []  # batches Redis answered NOSCRIPT, sent first
        self._writer: asyncio.Task[None] | None = None  # sends while there are calls
        self._room = asyncio.Event()  # set when a reply frees an in-flight slot
        self._closing: set[asyncio.Task[Any]] = set()
        self._flush_due = False  # a flush is scheduled for the next loop iteration
        width = str(self._width).encode()
        self._head_sha = ""  # the sha _evalsha_head was made for
        self._evalsha_head = b""
        self._evalsha_tail = b"$%d\r\n%s\r\n" % (len(width), width)

    @property
    def _conn(self) -> Any:
        """The current connection (None before the first call or after an error)."""
        return self._pipe.conn if self._pipe is not None else None

    async def call(self, op: str, key: str, *args: Any) -> Any:
        """Run operation ``op`` on ``key``; raises what Redis raises for the batch."""
        nargs, prefix, padding = self._layout[op]
        if len(args) != nargs:
            raise TypeError(f"{op} takes {nargs} arguments, got {len(args)}")
        record = prefix + SEP.join(map(str, (key, *args))) + padding
        if record.count(SEP) != self._width + 1:
            raise ValueError(f"{op}: key and arguments must not contain the unit separator")
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._queue.append((record, fut))
        if self._writer is None and not self._flush_due:
            self._wake()
        return await fut

    async def aclose(self) -> None:
        """Close the batcher's connection (calls in flight fail) and wait for its tasks."""
        pipe, self._pipe = self._pipe, None
        if pipe is not None:
            await pipe.conn.disconnect()
            if pipe.reader is not None:
                if pipe.idle is not None:  # waiting for a batch that will not come
                    pipe.reader.cancel()
                await asyncio.gather(pipe.reader, return_exceptions=True)
        if self._closing:
            await asyncio.gather(*self._closing, return_exceptions=True)

    def _wake(self) -> None:
        # The flush runs on the next loop iteration: the calls made during this turn
        # go out together.
        if self._writer is None and not self._flush_due:
            pipe = self._pipe
            if pipe is None or pipe.load_script or self._resend or not pipe.conn.is_connected:
                # Connecting first: the writer task's first step takes this turn's calls.
                self._writer = asyncio.get_running_loop().create_task(self._write_all())
            else:
                self._flush_due = True
                asyncio.get_running_loop().call_soon(self._flush)

    # -- writing --------------------------------------------------------------------
    def _flush(self) -> None:
        """Send what is queued. On a working connection with room in the pipeline
        (the steady state) the batches are written right here, without a task; anything
        else (connect, script load, resend, a full pipeline) goes to the writer task."""
        self._flush_due = False
        if self._writer is not None or not (self._queue or self._resend):
            return
        pipe = self._pipe
        writer = getattr(pipe.conn, "_writer", None) if pipe is not None else None
        if (
            pipe is None
            or writer is None
            or pipe.load_script
            or self._resend
            or not pipe.conn.is_connected
        ):
            self._writer = asyncio.get_running_loop().create_task(self._write_all())
            return
        while self._queue and len(pipe.in_flight) < self.max_in_flight:
            batch = _Batch(self._queue[: self.max_batch])
            self._queue = self._queue[self.max_batch :]
            try:
                # A write never blocks (the transport buffers); a dead connection shows
                # on the reader's side, which fails the batches in flight. writelines:
                # what asyncio's StreamWriter and fakeredis's in-process writer (the
                # embedded mode) both offer.
                writer.writelines((self._packed(batch),))
                self._expect(pipe, batch)
            except Exception as exc:
                batch.fail(exc)
                self._broken(pipe, exc)
                return
        if self._queue:  # the pipeline is full: the writer task waits for room
            self._writer = asyncio.get_running_loop().create_task(self._write_all())

    def _packed(self, batch: _Batch) -> bytes:
        """``EVALSHA sha 0 <blob> <width>`` in the Redis protocol."""
        blob = SEP.join(record for record, _ in batch.calls).encode()
        if self._head_sha != self.sha:
            self._head_sha = self.sha
            self._evalsha_head = b"*5\r\n$7\r\nEVALSHA\r\n$40\r\n%s\r\n$1\r\n0\r\n" % (
                self.sha.encode()
            )
        return b"%s$%d\r\n%s\r\n%s" % (self._evalsha_head, len(blob), blob, self._evalsha_tail)

    async def _write_all(self) -> None:
        try:
            while self._queue or self._resend:
                pipe = self._pipe
                if pipe is None:
                    pipe = self._pipe = _Pipe(self.redis.connection_pool.make_connection())
                if len(pipe.in_flight) >= self.max_in_flight:
                    self._room.clear()
                    await self._room.wait()
                    continue
                if self._resend:
                    batch = self._resend.pop(0)
                else:
                    batch = _Batch(self._queue[: self.max_batch])
                    self._queue = self._queue[self.max_batch :]
                await self._send(pipe, batch)
        finally:
            self._writer = None

    async def _send(self, pipe: _Pipe, batch: _Batch) -> None:
        """Write ``batch`` (after a SCRIPT LOAD when the connection is new or Redis lost
        the script); on a write error the connection is dropped and everything in
        flight on it fails."""
        conn = pipe.conn
        try:
            if not conn.is_connected:
                # Settings from the client's pool (address, credentials, database,
                # timeouts); the handshake reads its own replies, before any reader
                # runs. No health-check PING is ever sent on this connection: its reply
                # would interleave with the pipelined ones.
                await conn.connect()
                # The client's socket timeout bounds each read here (see _read_all),
                # not each write: redis-py would wrap every write in a task of its own.
                pipe.read_timeout, conn.socket_timeout = conn.socket_timeout, None
            if pipe.load_script:
                pipe.load_script = False
                self._expect(pipe, None)
                await conn.send_packed_command(
                    conn.pack_command("SCRIPT", "LOAD", self.source), check_health=False
                )
            self._expect(pipe, batch)
            await conn.send_packed_command(self._packed(batch), check_health=False)
        except BaseException as exc:
            batch.fail(exc)  # whether or not it was in flight yet
            self._broken(pipe, exc)
            if isinstance(exc, asyncio.CancelledError):
                raise

    def _expect(self, pipe: _Pipe, entry: _Batch | None) -> None:
        pipe.in_flight.append(entry)
        if pipe.reader is None:
            pipe.reader = asyncio.get_running_loop().create_task(self._read_all(pipe))
        elif pipe.idle is not None:
            if not pipe.idle.done():
                pipe.idle.set_result(None)
            pipe.idle = None

    # -- reading --------------------------------------------------------------------
    async def _read_all(self, pipe: _Pipe) -> None:
        """Match replies to the batches in flight on ``pipe``, in order. One reader per
        connection, for as long as it lives: between batches it waits for the next one
        (not for Redis, so the read timeout only runs while a batch is unanswered)."""
        loop = asyncio.get_running_loop()
        try:
            while True:
                if not pipe.in_flight:
                    pipe.idle = loop.create_future()
                    await pipe.idle
                    continue
                try:
                    async with asyncio.timeout(pipe.read_timeout):  # a hung Redis
                        reply: Any = await pipe.conn.read_response()
                except ResponseError as exc:  # an error reply; the connection is fine
                    reply = exc
                except TimeoutError as exc:
                    raise RedisTimeoutError(f"no reply from Redis in {pipe.read_timeout}s") from exc
                entry = pipe.in_flight.popleft()
                self._room.set()
                if entry is None:
                    continue  # SCRIPT LOAD (had it failed, the EVALSHA says NOSCRIPT)
                if isinstance(reply, NoScriptError) and not entry.retried:
                    # Redis lost its script cache (restart, SCRIPT FLUSH) but kept the
                    # connection: load the script again and resend the batch once.
                    entry.retried = True
                    pipe.load_script = True
                    self._resend.append(entry)
                    self._wake()
                elif isinstance(reply, Exception):
                    entry.fail(reply)
                else:
                    try:
                        entry.resolve(reply)
                    except Exception as exc:  # not one result per call: fail, don't hang
                        entry.fail(exc)
        except asyncio.CancelledError:
            if pipe.idle is not None and not pipe.in_flight:
                # Cancelled between batches (aclose, or the loop shutting down): nothing
                # to fail; aclose disconnects, a dying loop takes the socket with it.
                if self._pipe is pipe:
                    self._pipe = None
            else:
                self._broken(pipe, asyncio.CancelledError())
            raise
        except BaseException as exc:  # the connection broke
            self._broken(pipe, exc)
        finally:
            pipe.reader = pipe.idle = None

    def _broken(self, pipe: _Pipe, exc: BaseException) -> None:
        """Fail every batch in flight on ``pipe`` and drop its connection; the next
        batch connects again. Calls not sent yet stay queued for that connection."""
        if self._pipe is pipe:
            self._pipe = None
            task = asyncio.get_running_loop().create_task(pipe.conn.disconnect())
            self._closing.add(task)
            task.add_done_callback(self._closing.discard)
        if pipe.idle is not None and not pipe.idle.done():  # an idle reader: let it end
            pipe.idle.set_exception(ConnectionError("the connection was dropped"))
        while pipe.in_flight:
            entry = pipe.in_flight.popleft()
            if entry is not None:
                entry.fail(exc)
        self._room.set()


class _Pipe:
    """One connection and the batches in flight on it, in the order Redis answers
    them (None stands for the reply of a SCRIPT LOAD)."""

    __slots__ = ("conn", "idle", "in_flight", "load_script", "read_timeout", "reader")

    def __init__(self, conn: Any) -> None:
        self.conn = conn
        self.in_flight: deque[_Batch | None] = deque()
        self.reader: asyncio.Task[None] | None = None  # reads replies while connected
        self.idle: asyncio.Future[None] | None = None  # the reader waits for a batch
        self.load_script = True
        self.read_timeout: float | None = None  # the client's socket timeout


class _Batch:
    """The calls sent in one EVALSHA."""

    __slots__ = ("calls", "retried")

    def __init__(self, calls: list[tuple[str, asyncio.Future[Any]]]) -> None:
        self.calls = calls
        self.retried = False

    def resolve(self, results: list[Any]) -> None:
        if not isinstance(results, list) or len(results) != len(self.calls):
            raise ValueError(f"Redis answered {results!r:.80} to a batch of {len(self.calls)}")
        for (_, fut), res in zip(self.calls, results, strict=True):
            if not fut.done():
                fut.set_result(res)

    def fail(self, exc: BaseException) -> None:
        if isinstance(exc, asyncio.CancelledError):
            exc = RedisConnectionError("the inbox's Redis connection was closed")
        for _, fut in self.calls:
            if not fut.done():
                fut.set_exception(exc)
