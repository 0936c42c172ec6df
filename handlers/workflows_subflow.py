"""Deploy steps: a pipeline or saga step that is a deployment flow of its own (rolling,
blue-green, canary on the flow engine, unit ``deploy``).

The step publishes ``deployment.requested`` under an id derived from (run, step, try), so
the deploy unit mints the same deployment flow however often it is re-sent, and notes
which run waits for it. The deployment's outcome - ``deployment.completed``, ``.failed``,
``.rolled_back`` or ``.aborted`` - ends the step; the run then moves on as after a tool
call. Matching is by the deployment flow id, or for a request refused before a flow was
minted, by the request's event id (the outcome's causation id).
"""

from __future__ import annotations

import time

from bus.context import HandlerContext
from bus.router import Router
from flows.pipeline import Call, Outcome, advance
from flows.pipeline_facade import mint_flow_id
from schemas.envelope import Event
from schemas.errors import SchemaError
from schemas.events import validate_payload
from schemas.workflows import WorkflowState

router = Router("workflows")

#: How long the run <- deployment mapping is kept (a deployment can wait for approval).
AWAITS_TTL = 14 * 24 * 3600
_OUTCOMES = (
    "deployment.completed",
    "deployment.failed",
    "deployment.rolled_back",
    "deployment.aborted",
)


def request_ids(state: WorkflowState) -> tuple[str, str]:
    """The request event id of the cursor's deploy step and the flow it mints."""
    from flows.pipeline_core import subflow_request_id

    request_id = subflow_request_id(state.id, state.index, state.attempt)
    return request_id, mint_flow_id("deploy.requested", request_id)


async def start(ctx: HandlerContext, state: WorkflowState, call: Call) -> Outcome | None:
    """Publish the step's deployment request (again, after a crash: same id); an
    outcome only when the request cannot be valid."""
    payload = {**call.args}
    payload.setdefault("requested_by", f"workflow {state.id}")
    try:
        validate_payload("deployment.requested", payload)
    except SchemaError as exc:
        return Outcome(ok=False, error=f"deploy: {exc}", retryable=False)
    request_id, flow_id = request_ids(state)
    names, redis = ctx.names, ctx.redis
    for ref in (flow_id, request_id):
        await redis.set(names.workflow_awaits_key(ref), state.id, ex=AWAITS_TTL)
    await ctx.publish("deployment.requested", payload, id=request_id)
    return None


@router.subscribe(*_OUTCOMES, name="workflows.subflows")
async def on_outcome(event: Event, ctx: HandlerContext) -> None:
    """A deployment ended: end the deploy step that waits for it, if any."""
    from handlers.workflows import store_and_send, store_of

    names, redis = ctx.names, ctx.redis
    flow_id = event.data.get("flow_id")
    run_id = None
    for ref in (flow_id, event.causationid):
        if ref:
            raw = await redis.get(names.workflow_awaits_key(str(ref)))
            if raw is not None:
                run_id = raw.decode() if isinstance(raw, bytes) else str(raw)
                break
    if run_id is None:
        return  # not a deployment a run waits for
    store = store_of(ctx)
    state = await store.load(run_id)
    if state is None or not state.inflight or state.waiting is None:
        return
    if state.waiting not in (flow_id, mint_flow_id("deploy.requested", event.causationid or "")):
        return  # an earlier try's deployment, or another step's
    data = event.data
    if event.type == "deployment.completed":
        outcome = Outcome(ok=True, result=dict(data))
    elif event.type == "deployment.failed":
        outcome = Outcome(ok=False, error=f"deployment failed at {data.get('stage')}: "
                          f"{data.get('reason')}")  # fmt: skip
    else:
        verb = "rolled back" if event.type == "deployment.rolled_back" else "aborted"
        outcome = Outcome(ok=False, error=f"deployment {verb}: {data.get('reason')}")
    new, messages = advance(state, outcome, time.time())
    await store_and_send(ctx, new, messages, state.rev)
