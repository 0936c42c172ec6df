"""Deployment flows leave their record in the repository as they move: after every
decision the engine stores, the flow's summary and a journal record of that rev.

Recording never holds a flow up: the state in Redis is the authority and a rollback must
not wait for S3. With a records outbox (``flows.repository_outbox``, what the deploy unit
uses) a failed write stays queued in Redis and the next sweep writes it: no journal
record goes missing. Without one a failed write is logged at error level and counted
(``RecordingEngine.failures``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from flows.engine import FlowEngine
from flows.machine import FlowEvent
from flows.repository import FlowRepository, RepositoryError
from flows.repository_outbox import RecordOutbox
from flows.store import FlowStore
from schemas.flows import FlowState
from schemas.workflows import FlowRecord, JournalRecord

log = logging.getLogger("codebus.flows.repository")


def deployment_record(state: FlowState) -> FlowRecord:
    """The summary of a deployment flow."""
    step = state.steps[state.step] if state.step < len(state.steps) else None
    return FlowRecord(
        id=state.id,
        kind="deployment",
        rev=state.rev,
        app=state.app,
        environment=state.environment,
        version=state.version,
        strategy=state.strategy,
        phase=state.phase,
        terminal=state.terminal,
        step=state.step,
        step_name=None if step is None else str(step.get("kind")),
        reason=state.reason,
        evidence=state.evidence,
        created_at=state.created_at,
        updated_at=state.updated_at,
        detail={
            "namespace": state.namespace,
            "requested_by": state.requested_by,
            "images": state.images,
            "desired_weight": state.desired_weight,
            "actual_weight": state.actual_weight,
            "approval": state.approval,
            "stalled": state.stalled,
            "attempt": state.attempt,
        },
    )


def deployment_journal(state: FlowState) -> JournalRecord:
    """The journal record of this rev: the entries the decision that produced it wrote
    (the engine stamps them with the decision time, which is ``updated_at``)."""
    return JournalRecord(
        flow_id=state.id,
        rev=state.rev,
        at=state.updated_at,
        phase=state.phase,
        step=state.step,
        entries=[e for e in state.journal if float(e.get("at", 0.0)) >= state.updated_at],
    )


class RecordingEngine(FlowEngine):
    """A :class:`FlowEngine` that records each stored decision in ``repository``."""

    def __init__(
        self,
        store: FlowStore,
        repository: FlowRepository,
        *,
        clock: Callable[[], float] = time.time,
        outbox: RecordOutbox | None = None,
    ) -> None:
        super().__init__(store, clock=clock)
        self.repository = repository
        self.outbox = outbox
        self.failures = 0

    async def create(self, state: FlowState) -> bool:
        """Store a new flow and record it."""
        created = await super().create(state)
        stored = await self.store.load(state.id)
        if stored is not None:
            await self.record(stored)
        return created

    async def apply(self, flow_id: str, event: FlowEvent) -> FlowState | None:
        """Decide on ``event``, store, and record the flow as it now stands (also when
        nothing changed: a redelivery then repairs a record an outage missed)."""
        state = await super().apply(flow_id, event)
        if state is not None:
            await self.record(state)
        return state

    async def record(self, state: FlowState) -> None:
        """Write the journal record of ``state.rev``, then the summary."""
        if self.outbox is not None:
            if not await self.outbox.write(deployment_journal(state), deployment_record(state)):
                self.failures += 1
            return
        try:
            await self.repository.append(deployment_journal(state))
            await self.repository.save(deployment_record(state))
        except RepositoryError as exc:
            self.failures += 1
            log.error("flow %s rev %d: record not written: %s", state.id, state.rev, exc)
