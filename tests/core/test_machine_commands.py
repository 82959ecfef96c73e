"""Pause/resume, cancel, approvals, duplicates, stale inputs and rejections."""

from __future__ import annotations

import pytest

from kflow.core import DEFAULT_LIMITS, ErrorClass, decide, pending_timers, verify
from kflow.core.events import DuplicateStartIgnored, InputRejected, WorkflowRejected
from kflow.core.inputs import (
    CancelWorkflow,
    PauseWorkflow,
    StartWorkflow,
    StepError,
    StepResult,
    TimerFired,
)
from tests.core.driver import Driver, diamond, node, scheduled, types, workflow


def test_pause_stops_new_scheduling_and_resume_schedules_what_became_ready() -> None:
    d = Driver(diamond())
    d.start()
    assert types(d.pause()) == ["WorkflowPaused"]
    events = d.ok("a", "A")  # running step's result is still recorded
    assert types(events) == ["StepSucceeded"]
    assert d.status("b") == "ready" and d.status("c") == "ready"
    events = d.resume()
    assert types(events) == ["WorkflowResumed", "StepScheduled", "StepScheduled"]
    assert scheduled(events) == ["b", "c"]


def test_retry_due_while_paused_waits_for_resume() -> None:
    d = Driver(workflow(node("a", retry={"max_attempts": 2})))
    d.start()
    d.err("a")
    d.pause()
    events = d.fire_next()
    assert types(events) == ["StepRetryDue"] and d.status("a") == "ready"
    assert pending_timers(d.s) == []
    events = d.resume()
    assert scheduled(events) == ["a"] and d.attempt("a") == 2


def test_pause_twice_and_resume_when_running_are_rejected_notices() -> None:
    d = Driver(diamond())
    d.start()
    resumed = d.resume()
    assert isinstance(resumed[0], InputRejected) and resumed[0].code == "not_applicable"
    assert resumed[0].seq == 0
    d.pause()
    seq = d.s.seq
    again = d.pause()
    assert isinstance(again[0], InputRejected) and d.s.seq == seq


def test_cancel_mid_flight_marks_running_steps_cancelled_and_ignores_late_results() -> None:
    d = Driver(diamond())
    d.start()
    d.ok("a")
    events = d.cancel()
    assert types(events) == ["StepCancelled", "StepCancelled", "WorkflowCancelled"]
    assert d.status("b") == "cancelled" and d.s.status == "cancelled"
    assert d.ok("b", attempt=1) == []
    late_cancel = d.cancel()
    assert isinstance(late_cancel[0], InputRejected) and late_cancel[0].code == "workflow_finished"
    assert verify(d.log) is None


def test_cancel_while_in_backoff_ends_timers() -> None:
    d = Driver(workflow(node("a")))
    d.start()
    d.err("a")
    assert pending_timers(d.s)
    d.cancel()
    assert pending_timers(d.s) == []


def test_approval_step_waits_for_signal_and_approve_passes_payload() -> None:
    defn = workflow(
        node("ok", type="approval"), node("ship", "ok", input={"by": "$steps.ok.output.by"})
    )
    d = Driver(defn)
    events = d.start()
    assert events[-1].kind == "approval"  # type: ignore[attr-defined]
    assert d.status("ok") == "waiting"
    events = d.signal("ok", {"approved": True, "by": "ann"})
    assert types(events) == ["WorkflowSignalled", "StepSucceeded", "StepScheduled"]
    assert events[-1].input == {"by": "ann"}  # type: ignore[attr-defined]


def test_approval_rejected_fails_the_workflow() -> None:
    d = Driver(workflow(node("ok", type="approval"), node("ship", "ok")))
    d.start()
    events = d.signal("ok", {"approved": False, "comment": "no"})
    assert types(events) == ["WorkflowSignalled", "StepFailed", "WorkflowFailed"]


def test_bad_signals_are_rejected_with_a_reason() -> None:
    d = Driver(workflow(node("ok", type="approval")))
    d.start()
    wrong_name = d.signal("nope", {"approved": True})[0]
    assert isinstance(wrong_name, InputRejected) and wrong_name.code == "no_waiting_step"
    bad_payload = d.signal("ok", {"approved": "yes"})[0]
    assert isinstance(bad_payload, InputRejected) and bad_payload.code == "invalid_signal"
    assert "approved" in bad_payload.reason
    assert d.status("ok") == "waiting"


def test_processor_result_for_approval_step_is_rejected() -> None:
    d = Driver(workflow(node("ok", type="approval")))
    d.start()
    notice = d.ok("ok", attempt=1)[0]
    assert isinstance(notice, InputRejected) and notice.code == "not_a_task"


def test_duplicate_and_stale_results_change_nothing() -> None:
    d = Driver(workflow(node("a", retry={"max_attempts": 3}), node("b", "a")))
    d.start()
    d.err("a")
    d.fire_next()  # attempt 2 running
    state = d.s
    assert d.ok("a", "old", attempt=1) == []  # stale attempt
    assert d.ok("a", "future", attempt=3) == []  # wrong attempt
    assert d.s is state
    d.ok("a", "good")
    state = d.s
    assert d.ok("a", "again", attempt=2) == []  # duplicate
    assert d.err("a", attempt=2) == []
    assert d.s is state and d.s.steps["wf/a"].output == "good"


def test_out_of_order_results_of_parallel_steps() -> None:
    d = Driver(workflow(node("a"), node("b"), node("c"), node("j", "a", "b", "c")))
    d.start()
    for local in ("c", "a", "b"):
        d.ok(local, local)
    assert d.running() == ["j"]


def test_result_for_unknown_step_is_rejected_without_state_change() -> None:
    d = Driver(diamond())
    d.start()
    state = d.s
    unknown = d.send(StepResult(workflow_id="wf", step_key="wf/zzz", attempt=1))[0]
    assert isinstance(unknown, InputRejected) and unknown.code == "unknown_step"
    not_yet = d.send(StepResult(workflow_id="wf", step_key="wf/d", attempt=1))
    assert isinstance(not_yet[0], InputRejected)
    assert d.s == state and unknown.seq == 0


def test_input_for_unknown_workflow_is_rejected() -> None:
    for command in (
        StepResult(workflow_id="ghost", step_key="ghost/a", attempt=1),
        StepError(
            workflow_id="ghost", step_key="ghost/a", attempt=1, error_class=ErrorClass.PERMANENT
        ),
        CancelWorkflow(workflow_id="ghost"),
        PauseWorkflow(workflow_id="ghost"),
    ):
        (event,) = decide(None, command, 5)
        assert isinstance(event, InputRejected) and event.code == "unknown_workflow"
        assert event.workflow_id == "ghost" and event.seq == 0


def test_malformed_and_early_timers_are_rejected() -> None:
    d = Driver(workflow(node("a", timeout_ms=1000)))
    d.start()
    bad = d.send(TimerFired(workflow_id="wf", timer_id="garbage", due_at=1))[0]
    assert isinstance(bad, InputRejected) and bad.code == "unknown_timer"
    timer = pending_timers(d.s)[0]
    early = d.send(TimerFired(workflow_id="wf", timer_id=timer.timer_id, due_at=timer.due_at))
    assert isinstance(early[0], InputRejected) and early[0].code == "timer_not_due"


def test_duplicate_start_is_idempotent_and_answered_by_a_notice() -> None:
    d = Driver(diamond())
    d.start()
    state = d.s
    (event,) = d.start()
    assert isinstance(event, DuplicateStartIgnored) and event.seq == 0
    assert d.s is state


def _start(definition: object = None, input: object = None) -> StartWorkflow:
    return StartWorkflow(
        workflow_id="w",
        name="test",
        version=1,
        input=input,
        definition=definition,  # type: ignore[arg-type]
    )


def test_start_with_unknown_definition_is_rejected() -> None:
    (event,) = decide(None, _start(None), 1)
    assert isinstance(event, WorkflowRejected) and event.code == "unknown_definition"
    assert "test@1" in event.reason


def test_start_with_input_failing_schema_is_rejected_naming_the_field() -> None:
    schema = {
        "type": "object",
        "properties": {"n": {"type": "integer"}},
        "required": ["n"],
    }
    defn = workflow(node("a"), input_schema=schema)
    (event,) = decide(None, _start(defn, {"n": "x"}), 1)
    assert isinstance(event, WorkflowRejected) and event.code == "invalid_input"
    assert "input['n']" in event.reason and "integer" in event.reason
    assert types(decide(None, _start(defn, {"n": 2}), 1))[0] == "WorkflowStarted"


def test_start_with_oversized_input_is_rejected_and_not_recorded_in_full() -> None:
    big = "x" * (DEFAULT_LIMITS.max_payload_bytes + 1)
    (event,) = decide(None, _start(diamond(), {"blob": big}), 1)
    assert isinstance(event, WorkflowRejected) and event.code == "payload_too_large"
    assert str(DEFAULT_LIMITS.max_payload_bytes) in event.reason
    assert event.cause is not None and event.cause["input"] is None


def test_oversized_step_output_fails_the_step() -> None:
    d = Driver(workflow(node("a")))
    d.start()
    d.ok("a", "y" * (DEFAULT_LIMITS.max_payload_bytes + 1))
    assert d.s.status == "failed" and d.s.steps["wf/a"].error_type == "PayloadTooLarge"
    assert verify(d.log) is None


def test_expression_error_at_runtime_fails_the_step() -> None:
    d = Driver(workflow(node("a", input={"n": "$length(input.x)"})))
    d.start({"x": 5})
    assert d.s.status == "failed" and d.s.steps["wf/a"].error_type == "ExpressionError"


def test_state_for_another_workflow_is_a_programming_error() -> None:
    d = Driver(diamond())
    d.start()
    with pytest.raises(ValueError, match="given state of"):
        decide(d.s, CancelWorkflow(workflow_id="other"), 1)


def test_start_with_non_json_input_or_unresolvable_schema_ref_is_rejected() -> None:
    (event,) = decide(None, _start(diamond(), {"when": {1, 2}}), 1)
    assert isinstance(event, WorkflowRejected) and event.code == "invalid_input"
    schema = {"$ref": "https://example.invalid/schema.json"}
    (event,) = decide(None, _start(workflow(node("a"), input_schema=schema), {}), 1)
    assert isinstance(event, WorkflowRejected) and event.code == "invalid_definition"


def test_non_json_step_output_fails_the_step() -> None:
    d = Driver(workflow(node("a")))
    d.start()
    d.ok("a", float("nan"))
    assert d.s.steps["wf/a"].error_type == "InvalidOutput" and d.s.status == "failed"
