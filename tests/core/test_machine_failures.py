"""Retries, timeouts, heartbeats, permanent failure per on_failure, needs_review."""

from __future__ import annotations

from typing import Any

from kflow.core import ErrorClass, RetryPolicy, pending_timers, retry_delay_ms, verify
from kflow.core.events import StepRetryScheduled, StepTimedOut, WorkflowFailed
from tests.core.driver import Driver, node, scheduled, types, workflow

T, P, R = ErrorClass.TRANSIENT, ErrorClass.PERMANENT, ErrorClass.NEEDS_REVIEW


def retrying(max_attempts: int = 3, **extra: Any) -> Driver:
    retry = {"max_attempts": max_attempts, "initial_delay_ms": 100, "multiplier": 2.0}
    return Driver(workflow(node("a", retry=retry, **extra), node("b", "a")))


def test_transient_error_retries_after_backoff_then_succeeds() -> None:
    d = retrying()
    d.start()
    events = d.err("a", T)
    retry = events[0]
    assert isinstance(retry, StepRetryScheduled)
    assert 90 <= retry.delay_ms <= 110 and retry.due_at == d.now + retry.delay_ms
    assert [t.timer_id for t in pending_timers(d.s)] == ["retry:wf/a#1"]
    assert d.status("a") == "backoff"
    events = d.fire_next()
    assert types(events) == ["StepRetryDue", "StepScheduled"]
    assert d.attempt("a") == 2 and d.status("a") == "running"
    d.ok("a", "fine")
    assert d.running() == ["b"]
    assert verify(d.log) is None


def test_backoff_grows_and_is_deterministic_per_workflow_seed() -> None:
    policy = RetryPolicy(initial_delay_ms=1000, multiplier=3.0, max_delay_ms=5000, jitter=0.2)
    delays = [retry_delay_ms(policy, 42, "wf/a", n) for n in (1, 2, 3, 4)]
    assert 800 <= delays[0] <= 1200 and 2400 <= delays[1] <= 3600
    assert delays[2] <= 5000 and delays[3] <= 5000
    assert delays == [retry_delay_ms(policy, 42, "wf/a", n) for n in (1, 2, 3, 4)]
    assert delays != [retry_delay_ms(policy, 43, "wf/a", n) for n in (1, 2, 3, 4)]
    no_jitter = policy.model_copy(update={"jitter": 0.0})
    assert [retry_delay_ms(no_jitter, 1, "k", n) for n in (1, 2, 3)] == [1000, 3000, 5000]


def test_retries_exhausted_fails_workflow_and_cancels_others() -> None:
    d = Driver(workflow(node("a", retry={"max_attempts": 2}), node("x")))
    d.start()
    d.err("a", T)
    d.fire_next()
    events = d.err("a", T)
    assert types(events) == ["StepFailed", "StepCancelled", "WorkflowFailed"]
    assert "gave up after 2 attempt(s)" in (d.s.steps["wf/a"].message or "")
    assert d.status("x") == "cancelled"
    assert d.s.status == "failed" and pending_timers(d.s) == []


def test_permanent_error_does_not_retry() -> None:
    d = retrying(max_attempts=5)
    d.start()
    events = d.err("a", P)
    assert types(events) == ["StepFailed", "WorkflowFailed"]
    failed = events[-1]
    assert isinstance(failed, WorkflowFailed) and failed.step_key == "wf/a"


def test_on_failure_continue_lets_dependents_run_and_see_status() -> None:
    defn = workflow(
        node("a", on_failure="continue"),
        node("b", "a", input={"st": "$steps.a.status"}),
    )
    d = Driver(defn)
    d.start()
    events = d.err("a", P)
    assert scheduled(events) == ["b"]
    assert events[-1].input == {"st": "failed"}  # type: ignore[attr-defined]
    d.ok("b")
    assert d.s.status == "completed"


def test_on_failure_pause_waits_for_review_signal() -> None:
    d = Driver(workflow(node("a", on_failure="pause"), node("b", "a")))
    d.start()
    events = d.err("a", P)
    assert types(events) == ["StepAwaitingReview"]
    assert d.s.reviews == frozenset({"wf/a"}) and d.s.status == "running"
    events = d.signal("a", {"approved": True})
    assert types(events) == ["WorkflowSignalled", "StepRetryDue", "StepScheduled"]
    assert d.attempt("a") == 2


def test_needs_review_pauses_scheduling_until_approved_with_output() -> None:
    d = Driver(workflow(node("a"), node("other"), node("b", "a"), node("c", "other")))
    d.start()
    d.err("a", R)
    events = d.ok("other", "o")  # result applied, but c is not scheduled while reviewing
    assert types(events) == ["StepSucceeded"] and d.status("c") == "ready"
    events = d.signal("a", {"approved": True, "output": "fixed by hand"})
    assert types(events)[:2] == ["WorkflowSignalled", "StepSucceeded"]
    assert sorted(scheduled(events)) == ["b", "c"]
    assert d.s.steps["wf/a"].output == "fixed by hand"


def test_needs_review_rejected_fails_workflow() -> None:
    d = Driver(workflow(node("a")))
    d.start()
    d.err("a", R)
    events = d.signal("a", {"approved": False, "comment": "bad data"})
    assert types(events) == ["WorkflowSignalled", "StepFailed", "WorkflowFailed"]
    assert "bad data" in (d.s.steps["wf/a"].message or "")


def test_review_rejected_with_on_failure_pause_does_not_loop() -> None:
    d = Driver(workflow(node("a", on_failure="pause")))
    d.start()
    d.err("a", R)
    d.signal("a", {"approved": False})
    assert d.s.status == "failed"


def test_step_timeout_fires_and_retries() -> None:
    d = Driver(workflow(node("a", timeout_ms=5000, retry={"max_attempts": 2})))
    d.start()
    assert [t.timer_id for t in pending_timers(d.s)] == ["timeout:wf/a#1"]
    events = d.fire_next()
    assert isinstance(events[0], StepTimedOut) and events[0].timeout == "timeout"
    assert types(events) == ["StepTimedOut", "StepRetryScheduled"]
    d.fire_next()
    d.fire_next()
    assert d.s.status == "failed"
    assert d.s.steps["wf/a"].error_type == "Timeout"


def test_heartbeat_moves_the_deadline_and_old_deadline_is_stale() -> None:
    d = Driver(workflow(node("a", heartbeat_timeout_ms=1000, retry={"max_attempts": 1})))
    d.start()
    first = pending_timers(d.s)[0]
    assert first.due_at == 2000
    d.now = 1500
    assert types(d.beat("a")) == ["StepHeartbeatRecorded"]
    assert pending_timers(d.s)[0].due_at == 2500
    from kflow.core.inputs import TimerFired

    stale = TimerFired(workflow_id="wf", timer_id=first.timer_id, due_at=first.due_at)
    assert d.send(stale, now=2000) == []
    events = d.fire_next()
    assert types(events) == ["StepTimedOut", "StepFailed", "WorkflowFailed"]
    assert d.s.steps["wf/a"].error_type == "HeartbeatTimeout"


def test_result_after_timeout_of_that_attempt_is_ignored() -> None:
    d = Driver(workflow(node("a", timeout_ms=100, retry={"max_attempts": 3})))
    d.start()
    d.fire_next()  # attempt 1 timed out -> backoff
    before = d.s
    assert d.ok("a", "late", attempt=1) == []
    assert d.s == before


def test_heartbeat_without_heartbeat_timeout_records_nothing() -> None:
    d = Driver(workflow(node("a")))
    d.start()
    state = d.s
    assert d.beat("a") == []
    assert d.s is state


def test_map_node_failing_to_expand_can_be_retried_after_review() -> None:
    d = Driver(workflow(node("m", for_each="input.items", on_failure="pause")))
    d.start({"items": "not a list"})
    assert d.status("m") == "review"
    d.signal("m", {"approved": True, "output": ["by hand"]})
    assert d.s.status == "completed" and d.s.output == {"m": ["by hand"]}
