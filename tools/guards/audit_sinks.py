"""Audit sinks: a JSON-lines file, a Redis stream and a batched S3 uploader.

Each sink implements :class:`tools.guards.audit.AuditSink` (``write`` and ``close``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from schemas.names import Names
from tools.guards.audit import AuditRecord

log = logging.getLogger(__name__)


class JsonlFileSink:
    """Appends one JSON object per line to a local file."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._lock = asyncio.Lock()

    async def write(self, record: AuditRecord) -> None:
        """Append ``record`` (the file is created with its parent directories)."""
        line = record.model_dump_json() + "\n"
        async with self._lock:
            # File I/O blocks; keep it off the event loop. The lock keeps lines whole.
            await asyncio.to_thread(self._append, line)

    def _append(self, line: str) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a", encoding="utf-8") as fh:
            fh.write(line)

    async def close(self) -> None:
        """Nothing is buffered."""


class RedisStreamSink:
    """XADDs each record to ``Names.audit_stream``, trimmed to about ``maxlen`` entries."""

    def __init__(self, redis: Any, names: Names, *, maxlen: int = 100_000) -> None:
        self.redis = redis
        self.key = names.audit_stream
        self.maxlen = maxlen

    async def write(self, record: AuditRecord) -> None:
        """Append ``record`` as the stream entry field ``record`` (JSON)."""
        fields = {
            "record": record.model_dump_json(),
            "tool": record.tool,
            "outcome": record.outcome,
        }
        await self.redis.xadd(self.key, fields, maxlen=self.maxlen, approximate=True)

    async def close(self) -> None:
        """The Redis client belongs to the caller; nothing to do."""


class S3Client(Protocol):
    """The part of an aiobotocore S3 client this sink uses."""

    async def put_object(self, *, Bucket: str, Key: str, Body: bytes, **kwargs: Any) -> Any:
        """Upload one object."""
        ...


class S3BatchSink:
    """Buffers records and uploads each batch as one JSON-lines object.

    A batch is uploaded when ``batch_size`` records are buffered, every ``flush_interval``
    seconds (if set; a background task started on the first write), and on ``close()``.
    A failed upload keeps the records for the next attempt, up to ``max_buffer`` records;
    beyond that the oldest are dropped and counted in ``dropped`` (and logged).
    """

    def __init__(
        self,
        client: S3Client,
        bucket: str,
        *,
        prefix: str = "audit/",
        batch_size: int = 100,
        flush_interval: float | None = 60.0,
        max_buffer: int = 10_000,
    ) -> None:
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        self.client = client
        self.bucket = bucket
        self.prefix = prefix
        self.batch_size = batch_size
        self.flush_interval = flush_interval
        self.max_buffer = max(max_buffer, batch_size)
        self.buffer: list[str] = []
        self.uploaded_keys: list[str] = []
        self.dropped = 0
        self._lock = asyncio.Lock()
        self._ticker: asyncio.Task[None] | None = None

    async def write(self, record: AuditRecord) -> None:
        """Buffer ``record``; upload when the batch is full."""
        self.buffer.append(record.model_dump_json())
        if self.flush_interval is not None and self._ticker is None:
            self._ticker = asyncio.create_task(self._tick(self.flush_interval))
        if len(self.buffer) >= self.batch_size:
            await self.flush()

    async def flush(self) -> str | None:
        """Upload what is buffered as one object; returns its key (None if empty)."""
        async with self._lock:
            if not self.buffer:
                return None
            batch, self.buffer = self.buffer, []
            now = datetime.now(UTC)
            key = f"{self.prefix}{now:%Y/%m/%d/%H%M%S}-{uuid.uuid4().hex[:12]}.jsonl"
            body = ("\n".join(batch) + "\n").encode()
            try:
                await self.client.put_object(
                    Bucket=self.bucket, Key=key, Body=body, ContentType="application/x-ndjson"
                )
            except Exception:
                self._requeue(batch)
                raise
            self.uploaded_keys.append(key)
            return key

    def _requeue(self, batch: list[str]) -> None:
        merged = batch + self.buffer
        overflow = len(merged) - self.max_buffer
        if overflow > 0:
            self.dropped += overflow
            log.error("audit S3 buffer full: dropped %d oldest records", overflow)
            merged = merged[overflow:]
        self.buffer = merged

    async def _tick(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            try:
                await self.flush()
            except Exception:
                log.exception("periodic audit upload to s3://%s failed", self.bucket)

    async def close(self) -> None:
        """Stop the periodic upload and upload what is left."""
        if self._ticker is not None:
            self._ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._ticker
            self._ticker = None
        await self.flush()
