"""Pipeline and saga runs in Redis on the flow engine's store (``flows.store``): the same
compare-and-set Lua on ``rev``, creation index, due set and drain lease, under keys of
their own (``Names.workflow_key`` ...), so deployment flows and runs never mix."""

from __future__ import annotations

from typing import Any, cast

from flows.store import FlowStore
from schemas.flows import FlowState
from schemas.names import Names
from schemas.workflows import WorkflowState


class _RunKeys:
    """The key names FlowStore asks for, pointed at the runs' keys."""

    def __init__(self, names: Names) -> None:
        self.names = names

    def flow_key(self, flow_id: str) -> str:
        return self.names.workflow_key(flow_id)

    @property
    def flows_index_key(self) -> str:
        return self.names.workflows_index_key

    @property
    def flows_due_key(self) -> str:
        return self.names.workflows_due_key


class WorkflowStore(FlowStore):
    """Load and compare-and-set :class:`WorkflowState` documents."""

    def __init__(self, redis: Any, names: Names) -> None:
        super().__init__(redis, cast(Names, _RunKeys(names)))

    async def load(self, flow_id: str) -> WorkflowState | None:  # type: ignore[override]
        """The run, or None."""
        raw = await self.redis.get(self.names.flow_key(flow_id))
        return None if raw is None else WorkflowState.model_validate_json(raw)

    async def save(  # type: ignore[override]
        self, state: WorkflowState, expected_rev: int
    ) -> WorkflowState:
        """Write ``state`` if the stored rev is ``expected_rev`` (-1: new); raises
        ``flows.store.Conflict`` otherwise."""
        return cast(WorkflowState, await super().save(cast(FlowState, state), expected_rev))

    async def create(self, state: WorkflowState) -> bool:  # type: ignore[override]
        """Store a new run; False if a run with this id exists already."""
        return await super().create(cast(FlowState, state))
