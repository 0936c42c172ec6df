"""The decision function on its own: phases x events as tables, timers, and random event
orders with duplicates (hypothesis)."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flows.machine import Command, ScanDone, StallCheck, StepResult, WakeUp, decide
from schemas.flows import BlueGreenSpec, FlowOverrides, FlowState, Pause, SetWeight, StrategySpec
from tests.flows.helpers import new_state

T0 = 1_000.0


def runs(s: FlowState) -> list[dict[str, Any]]:
    return [a for a in s.outbox if a["kind"] == "run"]


def emitted(actions: list[dict[str, Any]]) -> list[str]:
    return [a["type"] for a in actions if a["kind"] == "emit"]


def answer(s: FlowState, now: float, **data: Any) -> tuple[FlowState, list[dict[str, Any]]]:
    """Reply to the first pending run: ok and ready (unless ``data`` says otherwise)."""
    run = runs(s)[0]
    ok = data.pop("ok", True)
    payload = {"ready": True, **data}
    return decide(
        s, StepResult(seq=run["seq"], ok=ok, data=payload, error=None if ok else "boom"), now
    )


def advance_to(s: FlowState, phase: str, *, now: float = T0, limit: int = 50) -> FlowState:
    """Answer runs and fire due timers until the flow is in ``phase``."""
    if s.phase == "pending":
        s, _ = decide(s, ScanDone(image="web:2.0", passed=True), now)
    for _ in range(limit):
        if s.phase == phase:
            return s
        if runs(s):
            s, _ = answer(s, now)
        elif s.timers:
            name, timer = next(iter(s.timers.items()))
            now = max(now, timer.due)
            s, _ = decide(s, WakeUp(timer=name, token=timer.token), now)
        else:
            break
    raise AssertionError(f"never reached {phase}; stuck in {s.phase} at step {s.step}")


def canary(**kw: Any) -> FlowState:
    steps = (SetWeight(set_weight=20), Pause(pause=None), SetWeight(set_weight=50), Pause(pause=60))
    return new_state("canary", overrides=FlowOverrides(steps=steps), **kw)


def blue_green() -> FlowState:
    spec = StrategySpec(blue_green=BlueGreenSpec(approval_timeout=100, scale_down_delay=5))
    return new_state("blue_green", spec=spec)


def in_phase(phase: str) -> FlowState:
    """A flow in ``phase`` (reached through the decision function itself)."""
    if phase == "pending":
        return canary()
    if phase == "awaiting_approval":
        return advance_to(blue_green(), "awaiting_approval")
    if phase == "progressing":
        s, _ = decide(canary(), ScanDone(image="web:2.0", passed=True), T0)
        return s  # entering step 0 (apply canary)
    if phase == "paused":
        return advance_to(canary(), "paused")
    if phase == "promoting":
        auto = StrategySpec(blue_green=BlueGreenSpec(auto_promote=True))
        return advance_to(new_state("blue_green", spec=auto), "promoting")
    if phase == "aborting":
        s, _ = decide(advance_to(canary(), "paused"), Command("abort", by="ann"), T0)
        return s
    if phase == "succeeded":
        quick = FlowOverrides(steps=(SetWeight(set_weight=50),))
        return advance_to(new_state("canary", overrides=quick), "succeeded", limit=200)
    s = advance_to(canary(), "paused")
    if phase == "failed":
        s, _ = decide(s, Command("abort", by="ann"), T0)
        s, _ = answer(s, T0, ok=False)
        return s
    s, _ = decide(s, Command("abort", by="ann"), T0)
    if phase == "rolled_back":
        s = s.model_copy(update={"meta": {**s.meta, "abort_target": "rolled_back"}})
    s, _ = answer(s, T0)
    return s


PHASES = [
    "pending",
    "progressing",
    "paused",
    "awaiting_approval",
    "promoting",
    "aborting",
    "succeeded",
    "aborted",
    "rolled_back",
    "failed",
]

R = "rejected"
# command -> phase -> the phase after the command (R: deployment.command_rejected, unchanged)
TABLE: dict[str, dict[str, str]] = {
    "promote": {
        "pending": R, "progressing": R, "paused": "progressing", "awaiting_approval": "promoting",
        "promoting": R, "aborting": R, "succeeded": R, "aborted": R, "rolled_back": R, "failed": R,
    },
    "promote_full": {
        "pending": R, "progressing": "promoting", "paused": "promoting",
        "awaiting_approval": "promoting", "promoting": R, "aborting": R, "succeeded": R,
        "aborted": R, "rolled_back": R, "failed": R,
    },
    "abort": {
        "pending": "aborted", "progressing": "aborting", "paused": "aborting",
        "awaiting_approval": "aborting", "promoting": "aborting", "aborting": R,
        "succeeded": R, "aborted": R, "rolled_back": R, "failed": R,
    },
    "retry": {
        "pending": R, "progressing": R, "paused": R, "awaiting_approval": R, "promoting": R,
        "aborting": R, "succeeded": R, "aborted": "progressing", "rolled_back": "progressing",
        "failed": "progressing",
    },
    "approve": {p: R for p in PHASES} | {"awaiting_approval": "promoting"},
    "deny": {p: R for p in PHASES} | {"awaiting_approval": "aborting"},
}  # fmt: skip


@pytest.mark.parametrize("phase", PHASES)
@pytest.mark.parametrize("command", list(TABLE))
def test_command_in_every_phase(command: str, phase: str) -> None:
    s = in_phase(phase)
    assert s.phase == phase
    kind = "promote" if command == "promote_full" else command
    after, actions = decide(
        s, Command(kind, by="ann", reason="because", full=command == "promote_full"), T0 + 1
    )  # type: ignore[arg-type]
    expected = TABLE[command][phase]
    if expected == R:
        assert after.phase == phase
        assert emitted(actions) == ["deployment.command_rejected"]
        rejected = actions[0]["data"]
        assert rejected["phase"] == phase and rejected["by"] == "ann" and rejected["reason"]
        assert after.step == s.step and after.timers == s.timers
    else:
        assert after.phase == expected
        assert "deployment.command_rejected" not in emitted(actions)


def test_abort_by_a_person_ends_aborted_with_who_and_why() -> None:
    s = advance_to(canary(), "paused")
    s, actions = decide(s, Command("abort", by="ann", reason="bad dashboards"), T0)
    assert s.phase == "aborting" and [a["op"] for a in runs(s)] == ["abort"]
    s, actions = answer(s, T0)
    assert s.phase == "aborted"
    [ev] = [a for a in actions if a["kind"] == "emit"]
    assert ev["type"] == "deployment.aborted"
    assert ev["data"]["by"] == "ann" and "bad dashboards" in ev["data"]["reason"]


def test_failed_step_rolls_back_and_says_why() -> None:
    s, _ = decide(canary(), ScanDone(image="web:2.0", passed=True), T0)
    s, _ = answer(s, T0)  # canary applied
    s, _ = answer(s, T0, ok=False)  # scaling to 20 % failed
    assert s.phase == "aborting" and "set weight 20 %" in (s.reason or "")
    s, actions = answer(s, T0)
    assert s.phase == "rolled_back"
    assert emitted(actions) == ["deployment.rolled_back", "deployment.failed"]


def test_not_ready_before_the_deadline_polls_then_rolls_back() -> None:
    s, _ = decide(canary(), ScanDone(image="web:2.0", passed=True), T0)
    s, _ = answer(s, T0)  # apply
    s, _ = answer(s, T0)  # scale -> check
    s, actions = answer(s, T0 + 1, ready=False, message="1 of 2 updated replicas are available")
    assert set(s.timers) == {"poll"} and [a["kind"] for a in actions] == ["wake"]
    token = s.timers["poll"].token
    s, _ = decide(s, WakeUp("poll", token), T0 + 700)
    s, _ = answer(s, T0 + 700, ready=False, message="1 of 2 updated replicas are available")
    assert s.phase == "aborting" and "not ready within 600.0 s" in (s.reason or "")


def test_progress_deadline_exceeded_rolls_back_at_once() -> None:
    s = new_state("rolling", objects=None)
    s, _ = decide(s, ScanDone(image="web:2.0", passed=True), T0)
    s, _ = answer(s, T0)
    msg = 'deployment "web" exceeded its progress deadline'
    s, _ = answer(s, T0, ready=False, failed=True, message=msg)
    assert s.phase == "aborting" and s.reason == msg


def test_stale_and_early_wake_ups() -> None:
    s = advance_to(canary(), "paused")
    s, _ = decide(s, Command("promote", by="ann"), T0)  # leave the indefinite pause
    s = advance_to(s, "paused")  # the 60 s pause
    timer = s.timers["step"]
    same, actions = decide(s, WakeUp("step", timer.token - 1), timer.due + 1)
    assert same is s and actions == []  # superseded token: ignored
    early, actions = decide(s, WakeUp("step", timer.token), timer.due - 10)
    assert early.phase == "paused" and early.timers["step"] == timer
    [wake] = actions
    assert (
        wake["kind"] == "wake"
        and wake["token"] == timer.token
        and wake["delay"] == pytest.approx(10)
    )
    on_time, _ = decide(early, WakeUp("step", timer.token), timer.due)
    assert on_time.step == s.step + 1


def test_result_for_an_operation_no_longer_pending_is_ignored() -> None:
    s, _ = decide(canary(), ScanDone(image="web:2.0", passed=True), T0)
    seq = runs(s)[0]["seq"]
    s2, _ = decide(s, StepResult(seq=seq, ok=True, data={}), T0)
    again, actions = decide(s2, StepResult(seq=seq, ok=True, data={}), T0)
    assert again is s2 and actions == []


def test_approval_timeout_actions() -> None:
    for action, phase in (
        ("abort", "aborting"),
        ("promote", "promoting"),
        ("stay_paused", "awaiting_approval"),
    ):
        spec = StrategySpec(
            blue_green=BlueGreenSpec(approval_timeout=100, approval_timeout_action=action)  # type: ignore[arg-type]
        )
        s = advance_to(new_state("blue_green", spec=spec), "awaiting_approval")
        timer = s.timers["approval"]
        s, actions = decide(s, WakeUp("approval", timer.token), timer.due)
        assert s.phase == phase, action
        if action == "abort":
            assert s.reason == "approval not given within 100.0 s"
        if action == "stay_paused":
            assert emitted(actions) == ["deployment.paused"] and not s.timers


def test_approval_records_who_and_why() -> None:
    s = advance_to(blue_green(), "awaiting_approval")
    s, _ = decide(s, Command("approve", by="bob", reason="checked the preview"), T0)
    assert s.approval is not None and s.approval["by"] == "bob"
    assert s.approval["reason"] == "checked the preview"


def test_failed_scan_fails_and_cannot_be_retried() -> None:
    s, actions = decide(canary(), ScanDone(image="web:2.0", passed=False, detail="2 critical"), T0)
    assert s.phase == "failed" and emitted(actions) == ["deployment.failed"]
    s, actions = decide(s, Command("retry", by="ann"), T0)
    assert s.phase == "failed" and emitted(actions) == ["deployment.command_rejected"]


def test_stalled_is_reported_once() -> None:
    s = advance_to(canary(), "paused")
    same, _ = decide(s, StallCheck(), s.phase_since + s.stall_after - 1)
    assert same is s
    s, actions = decide(s, StallCheck(), s.phase_since + s.stall_after + 1)
    assert s.stalled and emitted(actions) == ["deployment.stalled"]
    again, _ = decide(s, StallCheck(), s.phase_since + 2 * s.stall_after)
    assert again is s


def test_canary_reaches_succeeded_through_every_step_in_order() -> None:
    s = advance_to(canary(), "paused")
    s, _ = decide(s, Command("promote", by="ann"), T0)
    s = advance_to(s, "succeeded", limit=100)
    entered = [j["step"] for j in s.journal if j["kind"] == "step"]
    assert entered == list(range(len(s.steps)))
    assert s.outbox[-1]["type"] == "deployment.completed"


# ---- random event orders and duplicates ------------------------------------------------

EVENTS = st.lists(
    st.tuples(
        st.sampled_from(["result_ok", "result_not_ready", "result_fail", "wake", "stale_wake",
                         "duplicate", "promote", "promote_full", "abort", "approve", "deny",
                         "retry", "stall"]),
        st.integers(0, 3),
    ),
    max_size=60,
)  # fmt: skip


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(events=EVENTS, strategy=st.sampled_from(["canary", "blue_green", "rolling"]))
def test_random_orders_never_go_backwards_or_skip_a_step(
    events: list[tuple[str, int]], strategy: str
) -> None:
    s = (
        canary()
        if strategy == "canary"
        else blue_green()
        if strategy == "blue_green"
        else new_state("rolling")
    )
    s, _ = decide(s, ScanDone(image="web:2.0", passed=True), T0)
    now = T0
    seen: list[Any] = []
    for kind, n in events:
        now += n * 50
        ev: Any = None
        if kind.startswith("result") and runs(s):
            run = runs(s)[0]
            data = {"ready": kind != "result_not_ready", "message": "m"}
            ev = StepResult(seq=run["seq"], ok=kind != "result_fail", data=data, error="e")
        elif kind == "wake" and s.timers:
            name, timer = next(iter(s.timers.items()))
            ev = WakeUp(name, timer.token)
        elif kind == "stale_wake":
            ev = WakeUp("step", -1)
        elif kind == "duplicate" and seen:
            ev = seen[n % len(seen)]
        elif kind in ("promote", "promote_full", "abort", "approve", "deny", "retry"):
            ev = Command(kind.replace("_full", ""), by="x", full=kind == "promote_full")  # type: ignore[arg-type]
        elif kind == "stall":
            ev = StallCheck()
        if ev is None:
            continue
        before = s
        s, actions = decide(s, ev, now)
        seen.append(ev)
        # the revision counter of actions only grows; the outbox never loses undone work
        assert s.seq >= before.seq
        if s.attempt == before.attempt:
            # within one attempt the step never goes back ...
            assert s.step >= before.step
            # ... and moves one at a time, except promote --full / a first deployment jump
            if s.step > before.step + 1:
                assert (isinstance(ev, Command) and ev.full) or s.step == len(s.steps)
            # a terminal phase changes only by retry
            if before.terminal:
                assert s.phase == before.phase
        else:
            assert isinstance(ev, Command) and ev.kind == "retry" and before.terminal
        for a in actions:
            assert a in s.outbox
