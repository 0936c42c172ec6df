"""The decision function of deployment flows: ``decide(state, event, now)`` -> the next
state and the actions it implies. Pure: no I/O, no clock (``now`` is an argument).

Actions are appended to ``state.outbox`` (and returned); the engine carries them out in
order after the state was written by compare-and-set:

- ``run``: carry out an operation of the current step (``enter``, ``check``, ``abort``)
  through the tools; its outcome comes back as a :class:`StepResult`;
- ``emit``: publish an event (its id derives from the flow id and ``seq``: a repeat after
  a crash is dropped downstream as a duplicate);
- ``wake``: send a delayed :class:`WakeUp` for a timer written into ``state.timers``.

The state is the authority: a wake-up whose timer was cancelled or re-armed (another
token) is ignored, an early one re-arms for the rest, a result for an operation that is
no longer pending is ignored. Commands are accepted only in phases where they mean
something; otherwise ``deployment.command_rejected`` says why.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from flows.analysis import analysis_result, next_due
from flows.plan import describe_step
from schemas.analysis import AnalysisResult, AnalysisTemplate, Measurement
from schemas.flows import FlowState, Timer

JOURNAL_LIMIT = 200
#: A wake-up this early (seconds) counts as on time; earlier ones re-arm.
EARLY_TOLERANCE = 0.001


@dataclass(frozen=True)
class Start:
    """Begin without scans (no image to scan)."""


@dataclass(frozen=True)
class ScanDone:
    """A scan of one of the flow's images finished."""

    image: str
    passed: bool
    detail: str = ""
    stage: str = "security_scan"  # or "build": the image could not even be built


@dataclass(frozen=True)
class StepResult:
    """The outcome of the ``run`` action ``seq``."""

    seq: int
    ok: bool
    data: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    calls: tuple[dict[str, Any], ...] = ()


@dataclass(frozen=True)
class WakeUp:
    """A timer's wake-up arrived."""

    timer: str
    token: int


CommandKind = Literal["promote", "abort", "retry", "approve", "deny"]


@dataclass(frozen=True)
class Command:
    """An operator's command (from the CLI or an event)."""

    kind: CommandKind
    by: str
    reason: str = ""
    full: bool = False


@dataclass(frozen=True)
class StallCheck:
    """The reconciler asks: has this flow stayed in its phase past its deadline?"""


FlowEvent = Start | ScanDone | StepResult | WakeUp | Command | StallCheck

COMMAND_EVENT = {
    "promote": "deployment.promote_requested",
    "abort": "deployment.abort_requested",
    "retry": "deployment.retry_requested",
    "approve": "deployment.approval_granted",
    "deny": "deployment.approval_denied",
}


class _Decision:
    def __init__(self, state: FlowState, now: float) -> None:
        self.s = state.model_copy(deep=True)
        self.now = now
        self.actions: list[dict[str, Any]] = []

    # ---- primitives --------------------------------------------------------------------
    def _push(self, action: dict[str, Any]) -> None:
        self.s.seq += 1
        action["seq"] = self.s.seq
        self.s.outbox.append(action)
        self.actions.append(action)

    def emit(self, type: str, **data: Any) -> None:
        base = {
            "app": self.s.app,
            "version": self.s.version,
            "environment": self.s.environment,
            "flow_id": self.s.id,
        }
        self._push({"kind": "emit", "type": type, "data": {**base, **data}})

    def run(self, op: str) -> None:
        self._push({"kind": "run", "op": op, "step": self.s.step})
        self.journal("intent", op=op, step=self.s.step)

    def arm(self, name: str, delay: float) -> None:
        self._push({"kind": "wake", "timer": name, "delay": max(0.0, delay)})
        self.s.timers[name] = Timer(due=self.now + max(0.0, delay), token=self.s.seq)

    def journal(self, kind: str, **detail: Any) -> None:
        self.s.journal.append({"at": self.now, "kind": kind, **detail})
        del self.s.journal[:-JOURNAL_LIMIT]

    def phase(self, phase: str) -> None:
        if self.s.phase != phase:
            self.journal("phase", frm=self.s.phase, to=phase)
            self.s.phase = phase  # type: ignore[assignment]
            self.s.phase_since = self.now
            self.s.stalled = False

    def drop_pending_runs(self) -> None:
        self.s.outbox = [a for a in self.s.outbox if a["kind"] != "run"]

    # ---- steps -------------------------------------------------------------------------
    @property
    def step(self) -> dict[str, Any]:
        return self.s.steps[self.s.step]

    def enter(self, index: int) -> None:
        self.s.timers.clear()
        self.s.step = index
        self.s.step_state = {"entered_at": self.now}
        if index >= len(self.s.steps):
            self.succeed()
            return
        step = self.step
        kind = step["kind"]
        self.emit("deployment.step_started", step=index, kind=kind, description=describe_step(step))
        self.journal("step", step=index, description=describe_step(step))
        phase = step.get("phase", "progressing")
        if kind in ("apply", "switch", "scale"):
            self.phase(phase)
            self.run("enter")
        elif kind == "wait_ready":
            self.phase(phase)
            self.s.step_state["deadline"] = self.now + float(step["deadline"])
            self.run("check")
        elif kind == "pause":
            self.phase("paused")
            seconds = step.get("seconds")
            if seconds is None:
                self.emit("deployment.paused", reason=f"step {index}: paused until promoted")
            else:
                self.arm("step", float(seconds))
                reason = f"step {index}: pause {seconds} s"
                self.emit("deployment.paused", reason=reason, until=self.now + float(seconds))
        elif kind == "wait":
            self.phase(phase)
            self.arm("step", float(step.get("seconds") or 0.0))
        elif kind == "approval":
            self.request_approval(f"step {index}: promotion needs approval", step)
        elif kind == "analysis":
            self.phase(phase)
            self.s.step_state.update(started_at=self.now, measurements={})
            self.schedule_analysis()
        else:  # a plan from a newer version: fail loudly rather than skip it
            self.fail("plan", f"step {index}: unknown step kind {kind!r}")

    def request_approval(self, reason: str, step: dict[str, Any]) -> None:
        self.phase("awaiting_approval")
        timeout = step.get("timeout")
        action = step.get("timeout_action", "abort")
        if timeout:
            self.arm("approval", float(timeout))
        self.emit(
            "deployment.approval_requested",
            reason=reason,
            timeout_at=self.now + float(timeout) if timeout else None,
            timeout_action=action if timeout else None,
        )

    def complete(self) -> None:
        step = self.step
        self.emit(
            "deployment.step_completed",
            step=self.s.step,
            kind=step["kind"],
            description=describe_step(step),
        )
        self.enter(self.s.step + 1)

    def promotion_index(self) -> int:
        return next(
            (i for i, st in enumerate(self.s.steps) if st.get("promotion")), len(self.s.steps)
        )

    # ---- analysis ----------------------------------------------------------------------
    def measurements(self) -> dict[str, list[Measurement]]:
        raw = self.s.step_state.get("measurements") or {}
        return {k: [Measurement.model_validate(m) for m in v] for k, v in raw.items()}

    def schedule_analysis(self) -> None:
        """Arm the timer of the next measurement due, or conclude when none is."""
        template = AnalysisTemplate.model_validate(self.step["template"])
        started = float(self.s.step_state["started_at"])
        ms = self.measurements()
        dues = [next_due(m, ms.get(m.name, []), started) for m in template.metrics]
        live = [d for d in dues if d is not None]
        if not live:
            self.conclude(analysis_result(template, ms, finished=True))
        else:
            self.arm("analysis", min(live) - self.now)

    def after_measure(self, data: dict[str, Any]) -> None:
        raw = self.s.step_state.setdefault("measurements", {})
        for m in data.get("measurements") or []:
            raw.setdefault(m["metric"], []).append(m)
            self.emit(
                "deployment.analysis_measured",
                metric=m["metric"],
                phase=m["phase"],
                value=m.get("value"),
                message=m.get("message", ""),
                query=m.get("query", ""),
            )
        template = AnalysisTemplate.model_validate(self.step["template"])
        result = analysis_result(template, self.measurements(), finished=False)
        if result.phase == "running":
            self.schedule_analysis()
        else:
            self.conclude(result)

    def conclude(self, result: AnalysisResult) -> None:
        name = self.step["name"]
        self.s.step_state["result"] = result.phase
        self.journal("analysis", name=name, phase=result.phase, message=result.message)
        self.emit(
            "deployment.analysis_completed",
            phase=result.phase,
            message=result.message,
            metrics=[m.model_dump(mode="json") for m in result.metrics],
        )
        if result.phase == "successful":
            self.complete()
        elif result.phase == "inconclusive":
            self.s.evidence = result.message
            self.request_approval(f"analysis {name} inconclusive: {result.message}", self.step)
        else:
            why = f"analysis {name} {result.phase}: {result.message}"
            self.abort("rolled_back", why, evidence=result.message, stage="analysis")

    # ---- endings -----------------------------------------------------------------------
    def succeed(self) -> None:
        self.phase("succeeded")
        self.s.timers.clear()
        self.emit(
            "deployment.completed",
            duration_seconds=max(0.0, self.now - self.s.created_at),
            result={
                "namespace": self.s.namespace,
                "strategy": self.s.strategy,
                "weight": self.s.actual_weight,
            },
        )

    def fail(self, stage: str, reason: str) -> None:
        self.s.timers.clear()
        self.drop_pending_runs()
        self.s.reason = reason
        self.phase("failed")
        self.emit("deployment.failed", stage=stage, reason=reason[:2000])

    def abort(
        self,
        target: str,
        reason: str,
        *,
        by: str | None = None,
        evidence: str | None = None,
        stage: str = "rollout",
    ) -> None:
        """Stop where the flow is and bring the old version back (``target``: the phase
        to end in, ``aborted`` for a person's abort, ``rolled_back`` for a failure)."""
        self.s.timers.clear()
        self.drop_pending_runs()
        self.s.reason, self.s.evidence = reason, evidence
        self.s.meta["abort_target"], self.s.meta["aborted_by"] = target, by
        self.s.meta["abort_stage"] = stage
        if self.s.phase == "pending":  # nothing touched the cluster yet
            self.finish_abort(ok=True, error=None)
            return
        self.phase("aborting")
        self.run("abort")

    def finish_abort(
        self, *, ok: bool, error: str | None, data: dict[str, Any] | None = None
    ) -> None:
        target = self.s.meta.get("abort_target", "aborted")
        reason = self.s.reason or "aborted"
        data = data or {}
        if not ok:
            self.fail("rollback", f"{reason}; rollback failed: {error}")
            return
        if target == "rolled_back" and data.get("nothing_to_undo"):
            # A first deployment has no earlier version to go back to.
            self.fail("rollout", f"{reason}; nothing to roll back to (first deployment)")
            return
        self.phase(target)
        self.s.desired_weight = 0 if self.s.strategy == "canary" else self.s.desired_weight
        if target == "rolled_back":
            self.emit("deployment.rolled_back", reason=reason[:2000], evidence=self.s.evidence)
            stage = str(self.s.meta.get("abort_stage", "rollout"))
            self.emit("deployment.failed", stage=stage, reason=reason[:2000])
        else:
            self.emit(
                "deployment.aborted",
                reason=reason[:2000],
                by=self.s.meta.get("aborted_by"),
                evidence=self.s.evidence,
            )

    # ---- events ------------------------------------------------------------------------
    def on_start(self) -> None:
        if self.s.phase == "pending" and self.s.step == 0 and not self.s.step_state:
            self.enter(0)

    def on_scan(self, ev: ScanDone) -> None:
        if self.s.phase != "pending" or self.s.images.get(ev.image, False) is not None:
            return
        self.s.images[ev.image] = ev.passed
        self.journal("scan", image=ev.image, passed=ev.passed, detail=ev.detail)
        if not ev.passed:
            self.s.meta["scan_failed"] = ev.image
            what = "build" if ev.stage == "build" else "scan"
            self.fail(ev.stage, f"{what} of {ev.image}: {ev.detail or 'failed'}")
        elif all(self.s.images.values()):
            self.enter(0)

    def on_result(self, ev: StepResult) -> None:
        pending = next(
            (a for a in self.s.outbox if a["kind"] == "run" and a["seq"] == ev.seq), None
        )
        if pending is None:
            return  # superseded (abort, promote --full) or already recorded
        self.s.outbox.remove(pending)
        self.journal(
            "result", op=pending["op"], step=pending["step"], ok=ev.ok, error=ev.error,
            calls=list(ev.calls),
        )  # fmt: skip
        if pending["op"] == "abort":
            self.finish_abort(ok=ev.ok, error=ev.error, data=ev.data)
            return
        step = self.step
        if not ev.ok:
            why = f"step {self.s.step} ({describe_step(step)}) failed: {ev.error}"
            self.abort("rolled_back", why, evidence=ev.error)
            return
        if pending["op"] == "enter":
            self.after_enter(step, ev.data)
        elif pending["op"] == "measure":
            self.after_measure(ev.data)
        else:
            self.after_check(step, ev.data)

    def after_enter(self, step: dict[str, Any], data: dict[str, Any]) -> None:
        self.s.meta.update(data.get("meta") or {})
        if step["kind"] == "switch":
            self.s.switched = True
        if step.get("promotion"):
            self.emit("deployment.promoted", by=self.s.meta.get("promoted_by"), full=False)
        if data.get("first_deploy"):
            # Nothing to compare a canary with: the stable was created with the new
            # version; only the promotion's readiness wait is left.
            self.journal("first_deploy", detail="no stable version; deployed directly")
            self.enter(self.promotion_index() + 1)
            return
        if step["kind"] == "scale":
            if "weight" in step:
                self.s.desired_weight = int(step["weight"])
            if any(v for v in step["replicas"].values()):
                self.s.step_state["deadline"] = self.now + float(step.get("deadline") or 600.0)
                self.run("check")
                return
        self.complete()

    def after_check(self, step: dict[str, Any], data: dict[str, Any]) -> None:
        if data.get("actual_weight") is not None:
            self.s.actual_weight = float(data["actual_weight"])
        message = str(data.get("message", ""))
        if data.get("ready"):
            if step["kind"] == "scale" and "weight" in step:
                self.emit(
                    "deployment.weight_set",
                    desired_weight=int(step["weight"]),
                    actual_weight=float(data.get("actual_weight") or 0.0),
                    canary_replicas=int(data.get("canary_ready", 0)),
                    stable_replicas=int(data.get("stable_ready", 0)),
                )
            self.complete()
        elif data.get("failed"):
            self.abort("rolled_back", message, evidence=message)
        elif self.now >= float(self.s.step_state.get("deadline", self.now)):
            deadline = step.get("deadline")
            why = f"not ready within {deadline} s ({describe_step(step)}): {message}"
            self.abort("rolled_back", why, evidence=message)
        else:
            self.arm("poll", float(step.get("poll") or 5.0))

    def on_wake(self, ev: WakeUp) -> None:
        timer = self.s.timers.get(ev.timer)
        if timer is None or timer.token != ev.token or self.s.terminal:
            return  # cancelled or superseded: the state decides, the message is a hint
        if self.now < timer.due - EARLY_TOLERANCE:
            self._push({"kind": "wake", "timer": ev.timer, "delay": timer.due - self.now})
            self.s.outbox[-1]["token"] = timer.token
            return
        del self.s.timers[ev.timer]
        self.journal("timer", timer=ev.timer, late=round(self.now - timer.due, 3))
        if ev.timer == "poll":
            self.run("check")
        elif ev.timer == "step":
            self.complete()
        elif ev.timer == "approval":
            self.approval_timeout()
        elif ev.timer == "analysis":
            self.run("measure")

    def approval_timeout(self) -> None:
        step = self.step
        action = step.get("timeout_action", "abort")
        waited = step.get("timeout")
        if action == "promote":
            self.s.approval = {"granted": True, "by": "timeout", "reason": "approval timed out"}
            self.complete()
        elif action == "abort":
            self.abort("aborted", f"approval not given within {waited} s", by="timeout")
        else:
            reason = f"approval not given within {waited} s; waiting for a person"
            self.emit("deployment.paused", reason=reason)

    def reject(self, cmd: Command, why: str) -> None:
        self.journal("rejected", command=cmd.kind, by=cmd.by, why=why)
        self.emit(
            "deployment.command_rejected",
            command=COMMAND_EVENT[cmd.kind],
            phase=self.s.phase,
            reason=why,
            by=cmd.by,
        )

    def on_command(self, cmd: Command) -> None:
        p = self.s.phase
        self.journal("command", command=cmd.kind, by=cmd.by, reason=cmd.reason, full=cmd.full)
        if cmd.kind == "abort":
            if self.s.terminal or p == "aborting":
                self.reject(cmd, f"the flow is {p}; there is nothing to abort")
                return
            why = f"aborted by {cmd.by}" + (f": {cmd.reason}" if cmd.reason else "")
            self.abort("aborted", why, by=cmd.by)
        elif cmd.kind == "retry":
            if p not in ("aborted", "rolled_back", "failed"):
                self.reject(
                    cmd, f"only an aborted, rolled-back or failed flow can be retried; it is {p}"
                )
            elif self.s.meta.get("scan_failed"):
                self.reject(
                    cmd,
                    f"image {self.s.meta['scan_failed']} failed its scan; request a new deployment",
                )
            else:
                self.s.attempt += 1
                self.s.switched, self.s.reason, self.s.evidence = False, None, None
                self.s.desired_weight = self.s.actual_weight = None
                self.s.approval = None
                self.enter(0)
        elif cmd.kind in ("approve", "deny"):
            if p != "awaiting_approval":
                self.reject(cmd, f"the flow is {p}, not awaiting approval")
                return
            granted = cmd.kind == "approve"
            self.s.approval = {
                "granted": granted,
                "by": cmd.by,
                "reason": cmd.reason,
                "at": self.now,
            }
            if granted:
                self.s.meta["promoted_by"] = cmd.by
                self.complete()
            else:
                why = f"approval denied by {cmd.by}" + (f": {cmd.reason}" if cmd.reason else "")
                self.abort("aborted", why, by=cmd.by)
        else:
            self.on_promote(cmd)

    def on_promote(self, cmd: Command) -> None:
        p = self.s.phase
        if p not in ("progressing", "paused", "awaiting_approval"):
            self.reject(cmd, f"the flow is {p}; promote applies while it progresses or waits")
            return
        self.s.meta["promoted_by"] = cmd.by
        if cmd.full:
            target = self.promotion_index()
            if self.s.step >= target:
                self.reject(cmd, "the flow is already promoting")
                return
            self.drop_pending_runs()
            self.enter(target)
        elif p == "progressing":
            self.reject(
                cmd,
                f"step {self.s.step} ({describe_step(self.step)}) is running; promote leaves "
                "pauses and approvals, --full skips every remaining step",
            )
        else:
            if p == "awaiting_approval":
                self.s.approval = {
                    "granted": True,
                    "by": cmd.by,
                    "reason": cmd.reason,
                    "at": self.now,
                }
            self.complete()

    def on_stall_check(self) -> None:
        s = self.s
        if s.terminal or s.stalled or self.now - s.phase_since < s.stall_after:
            return
        s.stalled = True
        self.journal("stalled", phase=s.phase)
        self.emit(
            "deployment.stalled",
            phase=s.phase,
            since=s.phase_since,
            seconds=round(self.now - s.phase_since, 3),
        )


def decide(
    state: FlowState, event: FlowEvent, now: float
) -> tuple[FlowState, list[dict[str, Any]]]:
    """The next state of the flow and the actions (also appended to its ``outbox``).

    A state returned unchanged (same object) means the event changed nothing."""
    d = _Decision(state, now)
    if isinstance(event, Start):
        d.on_start()
    elif isinstance(event, ScanDone):
        d.on_scan(event)
    elif isinstance(event, StepResult):
        d.on_result(event)
    elif isinstance(event, WakeUp):
        d.on_wake(event)
    elif isinstance(event, Command):
        d.on_command(event)
    elif isinstance(event, StallCheck):
        d.on_stall_check()
    if d.s == state:
        return state, []
    d.s.updated_at = now
    return d.s, d.actions
