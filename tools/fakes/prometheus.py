"""In-memory ``prometheus-monitoring`` tool server: canned series per query string.

Same name, tools and models as :class:`tools.adapters.prometheus.PrometheusServer`.
A query that has no canned series answers an empty vector, as Prometheus does for a
selector that matches nothing; ``set_error`` makes a query fail like bad PromQL (400).

``script`` makes a query's answer change: a function of the evaluation time, or a list
of answers used one per call, so a test or the demo can stage a breach (error rate
0.01, 0.01, 0.09, ...) or a gap in the data (``None``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from pydantic import BaseModel

from schemas.tools.prometheus import (
    PrometheusQueryArgs,
    PrometheusQueryRangeArgs,
    PrometheusQueryRangeResult,
    PrometheusQueryResult,
    PrometheusTargetsArgs,
    PrometheusTargetsResult,
    Sample,
    Series,
    Target,
)
from tools.errors import ToolError, ToolFailed
from tools.spec import ToolServer, tool

# One scripted answer: a value (one series), several values (one series each), or None
# (no series at all: "no data").
Answer = float | Sequence[float] | None


class FakePrometheusServer(ToolServer):
    """Canned PromQL answers and targets, for tests and the demo."""

    name = "prometheus-monitoring"

    def __init__(self) -> None:
        self.series: dict[str, list[tuple[dict[str, str], list[float]]]] = {}
        self.errors: dict[str, tuple[int, str]] = {}
        self.targets: list[Target] = []
        self.calls: list[tuple[str, BaseModel]] = []
        self._failures: dict[str, list[ToolError]] = {}
        # query -> (script, answers one call at a time rather than one point at a time)
        self._scripts: dict[str, tuple[Callable[[float], Answer], bool]] = {}
        self._labels: dict[str, str] = {}

    # ---- test helpers --------------------------------------------------------------------

    def add_series(
        self, query: str, labels: dict[str, str], value: float | Sequence[float]
    ) -> None:
        """Answer ``query`` with one more series; a sequence of values is used in turn
        for the points of a range query (and its first value for instant queries)."""
        values = [float(value)] if isinstance(value, int | float) else [float(v) for v in value]
        if not values:
            raise ValueError("value must not be empty")
        self.series.setdefault(query, []).append((dict(labels), values))

    def script(
        self,
        query: str,
        answers: Callable[[float], Answer] | Sequence[Answer],
        *,
        label: str = "series",
    ) -> None:
        """Answer ``query`` from a script instead of canned series.

        ``answers`` is either a function of the evaluation time (unix seconds; the
        query's ``time``, or each point's time in a range query) or a list of answers
        used one per call, the last repeating once the list is used up. An answer is a
        number (one series), a sequence of numbers (one series each, labelled
        ``{label: "0"}``, ``{label: "1"}``, ...) or None (no series: no data). A script
        takes precedence over :meth:`add_series` for the same query.
        """
        self._labels[query] = label
        if callable(answers):
            self._scripts[query] = (answers, False)
            return
        queue = list(answers)
        if not queue:
            raise ValueError("answers must not be empty")
        turn = [0]

        def next_answer(_: float) -> Answer:
            answer = queue[min(turn[0], len(queue) - 1)]
            turn[0] += 1
            return answer

        self._scripts[query] = (next_answer, True)

    def _answer(self, query: str, at: float) -> list[tuple[dict[str, str], float]]:
        """One scripted answer of ``query`` as (labels, value) pairs."""
        answer = self._scripts[query][0](at)
        if answer is None:
            return []
        if isinstance(answer, int | float):
            return [({}, float(answer))]
        label = self._labels[query]
        return [({label: str(i)}, float(v)) for i, v in enumerate(answer)]

    def _scripted_range(self, query: str, stamps: list[float]) -> list[Series]:
        """A scripted query over ``stamps``: one call's answer at every point, or the
        script's answer at each point's time."""
        per_call = self._scripts[query][1]
        once = self._answer(query, stamps[-1]) if per_call else None
        points: dict[str, tuple[dict[str, str], list[Sample]]] = {}
        for at in stamps:
            for labels, value in once if once is not None else self._answer(query, at):
                key = repr(sorted(labels.items()))
                points.setdefault(key, (labels, []))[1].append(Sample(timestamp=at, value=value))
        return [Series(metric=labels, values=samples) for labels, samples in points.values()]

    def set_error(self, query: str, message: str, status: int = 400) -> None:
        """Make ``query`` fail as Prometheus does for bad PromQL."""
        self.errors[query] = (status, message)

    def add_target(self, job: str, instance: str, health: str = "up", last_error: str = "") -> None:
        """An active scrape target."""
        labels = {"job": job, "instance": instance}
        self.targets.append(
            Target.model_validate(
                {
                    "state": "active",
                    "job": job,
                    "instance": instance,
                    "scrape_pool": job,
                    "scrape_url": f"http://{instance}/metrics",
                    "health": health,
                    "labels": labels,
                    "last_error": last_error,
                }
            )
        )

    def fail_next(self, tool_name: str, error: ToolError) -> None:
        """Make the next call of ``tool_name`` raise ``error``."""
        self._failures.setdefault(tool_name, []).append(error)

    def _enter(self, tool_name: str, args: BaseModel, query: str | None = None) -> None:
        self.calls.append((tool_name, args))
        pending = self._failures.get(tool_name)
        if pending:
            raise pending.pop(0)
        if query is not None and query in self.errors:
            status, message = self.errors[query]
            raise ToolFailed(
                f"Prometheus answered HTTP {status}: bad_data: {message}",
                tool=f"prometheus-monitoring.{tool_name}",
                status=status,
            )

    # ---- tools ---------------------------------------------------------------------------

    @tool(read_only=True)
    async def prometheus_query(self, args: PrometheusQueryArgs) -> PrometheusQueryResult:
        """The canned series of ``query`` at ``time`` (now by default)."""
        self._enter("prometheus_query", args, args.query)
        at = args.time.timestamp() if args.time is not None else time.time()
        if args.query in self._scripts:
            scripted = [
                Series(metric=labels, value=Sample(timestamp=at, value=value))
                for labels, value in self._answer(args.query, at)
            ]
            return PrometheusQueryResult(result_type="vector", series=scripted)
        series = [
            Series(metric=labels, value=Sample(timestamp=at, value=values[0]))
            for labels, values in self.series.get(args.query, [])
        ]
        return PrometheusQueryResult(result_type="vector", series=series)

    @tool(read_only=True)
    async def prometheus_query_range(
        self, args: PrometheusQueryRangeArgs
    ) -> PrometheusQueryRangeResult:
        """The canned series of ``query`` at every ``step`` from ``start`` to ``end``."""
        self._enter("prometheus_query_range", args, args.query)
        start, end, step = args.start.timestamp(), args.end.timestamp(), float(args.step)
        count = int((end - start) // step) + 1
        if args.query in self._scripts:
            stamps = [start + i * step for i in range(count)]
            scripted = self._scripted_range(args.query, stamps)
            return PrometheusQueryRangeResult(result_type="matrix", series=scripted)
        series = [
            Series(
                metric=labels,
                values=[
                    Sample(timestamp=start + i * step, value=values[i % len(values)])
                    for i in range(count)
                ],
            )
            for labels, values in self.series.get(args.query, [])
        ]
        return PrometheusQueryRangeResult(result_type="matrix", series=series)

    @tool(read_only=True)
    async def prometheus_targets(self, args: PrometheusTargetsArgs) -> PrometheusTargetsResult:
        """The targets added with :meth:`add_target`, filtered like the real server."""
        self._enter("prometheus_targets", args)
        targets = [
            t
            for t in self.targets
            if args.state in ("any", t.state)
            and (args.health is None or t.health == args.health)
            and (args.job is None or t.job == args.job)
        ]
        return PrometheusTargetsResult(
            targets=targets,
            up=sum(t.health == "up" for t in targets),
            down=sum(t.health == "down" for t in targets),
        )
