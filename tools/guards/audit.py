"""Audit: one record per tool call, with secrets redacted, written to every sink.

A record says who (principal and role) called which tool with which arguments, how it
ended (``ok``, ``error``, ``denied``, ``cancelled``), the error, the duration, the number
of attempts, whether the result came from the cache, the result itself (or a summary
when it is large), and the event it was made for (``event_id``, ``correlationid``,
``causationid``: see :mod:`tools.guards.audit_context`). Sinks are in
:mod:`tools.guards.audit_sinks`.

A failing sink is logged and does not fail the tool call: the deployment that already
happened must not be reported as failed because an audit bucket was unreachable.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, Literal, Protocol

from pydantic import BaseModel, Field

from tools.guards import Next, ToolCall
from tools.guards.audit_context import OriginSource, current_origin
from tools.redaction import redact, redact_text

log = logging.getLogger(__name__)

Outcome = Literal["ok", "error", "denied", "cancelled"]


class AuditRecord(BaseModel):
    """One audited tool call."""

    id: str = Field(default_factory=lambda: uuid.uuid4().hex)
    time: datetime = Field(default_factory=lambda: datetime.now(UTC))
    principal: str
    role: str | None
    tool: str
    server: str
    arguments: dict[str, Any]
    outcome: Outcome
    error_type: str | None = None
    error: str | None = None
    duration_ms: float = 0.0
    attempts: int = 0
    cache_hit: bool = False
    result: Any = None
    #: The event whose handler made the call (None outside a handler).
    event_id: str | None = None
    #: That event's correlation id (the deployment); the console groups by it.
    correlationid: str | None = None
    #: The event that caused ``event_id``.
    causationid: str | None = None


class AuditSink(Protocol):
    """Where audit records go (file, Redis stream, S3, ...)."""

    async def write(self, record: AuditRecord) -> None:
        """Store or buffer one record."""
        ...

    async def close(self) -> None:
        """Flush buffers and release resources."""
        ...


class Auditor:
    """Builds redacted records and fans them out to the sinks."""

    def __init__(
        self,
        sinks: Sequence[AuditSink] = (),
        *,
        result_max_chars: int = 4000,
        origin: OriginSource | None = None,
    ) -> None:
        self.sinks = list(sinks)
        self.result_max_chars = result_max_chars
        self.origin = origin

    def build(
        self,
        call: ToolCall,
        outcome: Outcome,
        *,
        duration_ms: float = 0.0,
        error: BaseException | None = None,
        result: BaseModel | None = None,
    ) -> AuditRecord:
        """A record of ``call`` with arguments, error and result redacted, and the ids of
        the event being handled in this task (if any)."""
        origin = current_origin(self.origin)
        return AuditRecord(
            principal=call.principal,
            role=call.role,
            tool=call.name,
            server=call.spec.server,
            arguments=redact(self._clip(call.args.model_dump(mode="json"))),
            outcome=outcome,
            error_type=type(error).__name__ if error is not None else None,
            error=redact_text(str(error)) if error is not None else None,
            duration_ms=round(duration_ms, 3),
            attempts=call.attempts,
            cache_hit=call.cache_hit,
            result=self._summarise(result),
            event_id=origin.event_id,
            correlationid=origin.correlationid,
            causationid=origin.causationid,
        )

    def _clip(self, value: Any) -> Any:
        """``value`` with strings longer than ``result_max_chars`` replaced by their size.

        A file's content or a manifest is not audit material, and redacting megabytes
        would stall the event loop.
        """
        if isinstance(value, str) and len(value) > self.result_max_chars:
            return f"<{len(value)} characters, not recorded>"
        if isinstance(value, dict):
            return {k: self._clip(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self._clip(v) for v in value]
        return value

    def _summarise(self, result: BaseModel | None) -> Any:
        if result is None:
            return None
        raw = result.model_dump(mode="json")
        if len(json.dumps(raw, default=str)) > self.result_max_chars:
            # Large results (logs, manifests) would bloat every sink; keep their shape only
            # (field names, no values: nothing to redact, and no megabytes to scan).
            return {"truncated": True, "fields": sorted(raw) if isinstance(raw, dict) else []}
        return redact(raw)

    async def emit(self, record: AuditRecord) -> None:
        """Write ``record`` to every sink; a failing sink is logged, never raised."""
        for sink in self.sinks:
            try:
                await sink.write(record)
            except Exception:
                log.exception("audit sink %s failed for %s", type(sink).__name__, record.tool)

    async def denied(self, call: ToolCall, error: BaseException) -> None:
        """Record a call the permission guard rejected."""
        await self.emit(self.build(call, "denied", error=error))

    async def close(self) -> None:
        """Close every sink (flushing buffered records)."""
        for sink in self.sinks:
            try:
                await sink.close()
            except Exception:
                log.exception("closing audit sink %s failed", type(sink).__name__)


class AuditGuard:
    """Times the rest of the chain and records how the call ended."""

    def __init__(self, auditor: Auditor) -> None:
        self.auditor = auditor

    def enabled(self, call: ToolCall) -> bool:
        """Switched off per tool with ``audit: false``."""
        return call.policy.audit

    async def __call__(self, call: ToolCall, call_next: Next) -> BaseModel:
        """Run the call and emit one record for it, whatever the outcome."""
        started = time.perf_counter()
        try:
            result = await call_next(call)
        except asyncio.CancelledError as exc:
            await self._emit(call, "cancelled", started, error=exc)
            raise
        except Exception as exc:
            await self._emit(call, "error", started, error=exc)
            raise
        await self._emit(call, "ok", started, result=result)
        return result

    async def _emit(
        self,
        call: ToolCall,
        outcome: Outcome,
        started: float,
        *,
        error: BaseException | None = None,
        result: BaseModel | None = None,
    ) -> None:
        duration_ms = (time.perf_counter() - started) * 1000
        record = self.auditor.build(
            call, outcome, duration_ms=duration_ms, error=error, result=result
        )
        await self.auditor.emit(record)
