"""Shared pieces of pipelines and sagas: the messages a transition implies, the outcome
of a tool call, deterministic ids, context templates and the journal."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

from schemas.workflows import TEMPLATE, WorkflowState

JOURNAL_LIMIT = 300
_IDS = uuid.UUID("7f1c2a9e-4b6d-4e1f-8a3c-2d5e6f7a8b9c")


@dataclass(frozen=True)
class Message:
    """Something a transition implies: an event to publish, or (``due``) the next cursor
    to send into the unit's queue after ``delay`` seconds."""

    type: str
    data: dict[str, Any]
    delay: float = 0.0
    due: bool = False
    queue: str | None = None  # a due message's subscription (None: the workflows unit's)


@dataclass
class Outcome:
    """What happened when the cursor's tool was called."""

    ok: bool
    result: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    retryable: bool = True


Transition = tuple[WorkflowState, list[Message]]


def run_id(event_id: str, kind: str) -> str:
    """The id codebus mints for the run a ``workflow.run_requested`` starts: derived from
    the request's event id, so a redelivered request finds its run instead of a twin."""
    return f"{kind}-{uuid.uuid5(_IDS, event_id).hex[:20]}"


def message_id(flow_id: str, rev: int, n: int) -> str:
    """The id of the ``n``-th message of the transition that produced ``rev``."""
    return str(uuid.uuid5(_IDS, f"{flow_id}\x1f{rev}\x1f{n}"))


def subflow_request_id(flow_id: str, index: int, attempt: int) -> str:
    """The event id of the ``deployment.requested`` a deploy step publishes: the same
    step and try, the same id (so the deployment flow is minted once)."""
    return str(uuid.uuid5(_IDS, f"{flow_id}\x1fsubflow\x1f{index}\x1f{attempt}"))


# ---- templates -------------------------------------------------------------------------


def lookup(data: Any, path: str) -> Any:
    """``data['a']['b']`` for ``a.b`` (list items by number); KeyError names the path."""
    value = data
    for part in path.split("."):
        if isinstance(value, dict) and part in value:
            value = value[part]
        elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            raise KeyError(f"{path!r}: no {part!r} here")
    return value


def render(value: Any, context: dict[str, Any]) -> Any:
    """``value`` with its ``${...}`` templates filled from ``context``; a string that is
    one template keeps the value's type (a number stays a number)."""
    if isinstance(value, str):
        whole = TEMPLATE.fullmatch(value)
        if whole:
            return lookup(context, whole.group(0)[2:-1])
        return TEMPLATE.sub(lambda m: str(lookup(context, m.group(0)[2:-1])), value)
    if isinstance(value, dict):
        return {k: render(v, context) for k, v in value.items()}
    if isinstance(value, list):
        return [render(v, context) for v in value]
    return value


# ---- helpers ---------------------------------------------------------------------------


def due_message(s: WorkflowState, delay: float = 0.0) -> Message:
    return Message(
        "workflow.step_due",
        {"flow_id": s.id, "mode": s.mode, "index": s.index, "attempt": s.attempt},
        delay=delay,
        due=True,
        queue=s.queue,
    )


def retry_later(
    s: WorkflowState, delay: float, error: str, now: float
) -> tuple[WorkflowState, list[Message]]:
    journal(
        s, now, "retry", mode=s.mode, index=s.index, attempt=s.attempt, error=error, delay=delay
    )
    s.attempt += 1
    s.due = now + delay
    return s, [due_message(s, delay)]


def journal(s: WorkflowState, now: float, what: str, **detail: Any) -> None:
    s.journal.append({"at": now, "kind": what, **detail})
    del s.journal[:-JOURNAL_LIMIT]
