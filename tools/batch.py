"""Run many tool calls with bounded concurrency; one failure never sinks the batch.

    results = await BatchProcessor(toolbox, concurrency=3).run(
        [("security-scanner.docker_security_scan", {"image": img}) for img in images])
    failed = [r for r in results if not r.ok]

Results come back in input order, one per item: ``ok`` with the result model, or the
error type and (redacted) message.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import dataclass

from pydantic import BaseModel

from tools.redaction import redact_text
from tools.toolbox import Args, ToolCaller


@dataclass(frozen=True)
class BatchItem:
    """One call of a batch."""

    tool: str
    args: Args


@dataclass(frozen=True)
class BatchResult:
    """Outcome of one item: ``result`` when ``ok``, else ``error_type`` and ``error``."""

    index: int
    tool: str
    ok: bool
    result: BaseModel | None = None
    error_type: str | None = None
    error: str | None = None


class BatchProcessor:
    """Calls tools through any :class:`~tools.toolbox.ToolCaller`, at most ``concurrency``
    at a time."""

    def __init__(self, toolbox: ToolCaller, concurrency: int = 5) -> None:
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        self.toolbox = toolbox
        self.concurrency = concurrency

    async def run(
        self, items: Iterable[BatchItem | tuple[str, Args]], *, role: str | None = None
    ) -> list[BatchResult]:
        """Run every item; returns one :class:`BatchResult` per item, in input order."""
        batch = [i if isinstance(i, BatchItem) else BatchItem(*i) for i in items]
        # One semaphore per run: two concurrent runs each get their own bound.
        semaphore = asyncio.Semaphore(self.concurrency)

        async def one(index: int, item: BatchItem) -> BatchResult:
            async with semaphore:
                try:
                    result = await self.toolbox.call_tool(item.tool, item.args, role=role)
                except Exception as exc:
                    return BatchResult(
                        index,
                        item.tool,
                        False,
                        error_type=type(exc).__name__,
                        error=redact_text(str(exc)),
                    )
                return BatchResult(index, item.tool, True, result=result)

        return list(await asyncio.gather(*(one(i, item) for i, item in enumerate(batch))))
