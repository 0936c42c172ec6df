"""Calling tools from handlers: tool errors become the bus's retry / reject signals.

Transient tool failures (connection errors, timeouts, 5xx, an open circuit) are
retried by the runtime with backoff; calls that can never succeed (bad arguments,
permission denied, unknown tool) dead-letter the event. ``ToolFailed`` - the tool ran
and said no - is left to the handler, which usually turns it into a domain event.

The call is audited as made for the handler's event (its id, correlation and cause),
whether or not the worker's logging middleware runs around the handler.
"""

from __future__ import annotations

from typing import Any, cast

from pydantic import BaseModel

from bus.context import HandlerContext
from bus.errors import Reject, Retry
from schemas.tool_calls import Args, GuardedCall
from tools.errors import (
    CircuitOpen,
    ToolArgumentError,
    ToolNotFound,
    ToolPermissionDenied,
    ToolTransientError,
)
from tools.guards.audit_context import call_origin


async def _call_tool(
    ctx: HandlerContext,
    name: str,
    args: Args,
    *,
    passthrough: tuple[type[Exception], ...] = (),
) -> Any:
    toolbox = ctx.toolbox
    event = ctx.event
    try:
        with call_origin(event.id, event.correlationid, event.causationid):
            result: BaseModel = await toolbox.call_tool(name, args)
    except passthrough:
        raise
    except CircuitOpen as exc:
        raise Retry(f"{name}: circuit open", delay=max(1.0, exc.retry_after)) from exc
    except ToolTransientError as exc:
        raise Retry(f"{name}: {exc}") from exc
    except (ToolArgumentError, ToolPermissionDenied, ToolNotFound) as exc:
        raise Reject(f"{name}: {exc}") from exc
    return result


#: ``ctx.toolbox.call_tool`` with tool errors mapped to Retry / Reject; exceptions in
#: ``passthrough`` reach the caller unchanged. Typed by tool name: the result is the
#: tool's result model (``schemas.tool_calls``).
call_tool = cast(GuardedCall, _call_tool)
