"""The runs' sweeper: a run whose pending step has waited far longer than that step may
take - its ``workflow.step_due`` dead-lettered, say, after Redis was unreachable past the
retry budget - gets the step sent again, so no run waits for ever on a lost message.

"Far longer" is the step's timeout plus ``grace`` after the step was due (or its intent
recorded), so a step still running in a live delivery is never sent a second time in the
normal course; the cursor check and the intent's compare-and-set then keep two copies
from both advancing the run.
"""

from __future__ import annotations

from dataclasses import dataclass

from flows.pipeline import Message, current_call
from flows.pipeline_core import due_message
from flows.pipeline_store import WorkflowStore


@dataclass
class RunSweep:
    """What one sweep found: runs re-sent, and runs still live (the chain goes on)."""

    resent: list[Message]
    live: int


async def overdue_steps(
    store: WorkflowStore, now: float, grace: float, queue: str | None = None
) -> RunSweep:
    """The step_due of every live run of ``queue`` (the subscription that runs its steps;
    None: the workflows unit's) whose step is overdue by its timeout + ``grace``."""
    resent: list[Message] = []
    live = 0
    # Terminal runs leave the due set: what is in it is live.
    for flow_id, due in await store.due(before=float("inf")):
        state = await store.load(flow_id)
        if state is None or state.terminal or state.queue != queue:
            continue
        live += 1
        if due > now - grace:
            continue
        try:
            timeout = current_call(state).timeout
        except (KeyError, IndexError):
            timeout = 0.0  # the delivery will fail the step at once
        since = state.due if state.due is not None else state.updated_at
        if now - since > timeout + grace:
            resent.append(due_message(state))
    return RunSweep(resent, live)
