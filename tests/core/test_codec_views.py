"""JSON round trips of inputs, events and state; adapter helpers; read-model folds."""

from __future__ import annotations

import json

import pytest

from kflow.core import (
    ErrorClass,
    WorkflowState,
    apply_step_event,
    apply_workflow_event,
    event_from_dict,
    event_to_dict,
    input_from_dict,
    input_to_dict,
    is_waiting,
    step_view,
    summary,
    tasks_from_events,
    timers_for,
)
from kflow.core.events import StepEvent
from kflow.core.inputs import Input, SignalWorkflow, StartWorkflow, StepError, TimerFired
from kflow.core.jsondoc import dumps
from tests.core.driver import Driver, diamond, node, workflow


def full_run() -> Driver:
    d = Driver(
        workflow(
            node("a", timeout_ms=100, heartbeat_timeout_ms=50),
            node("m", "a", for_each="steps.a.output", input={"i": "$item"}),
            node("ok", "m", type="approval"),
        )
    )
    d.start({"x": 1})
    d.beat("a")
    d.ok("a", [1, 2])
    d.ok("m[0]")
    d.err("m[1]")
    return d


def test_events_round_trip_through_json_losslessly() -> None:
    d = full_run()
    for event in d.log:
        data = json.loads(dumps(event_to_dict(event)))
        assert data["type"] == type(event).__name__
        assert event_from_dict(data) == event


def test_inputs_round_trip_through_json_losslessly() -> None:
    commands: list[Input] = [
        StartWorkflow(workflow_id="w", name="n", version=1, input={"a": [1]}, definition=diamond()),
        StartWorkflow(workflow_id="w", name="n", version=1),
        StepError(workflow_id="w", step_key="w/a", attempt=2, error_class=ErrorClass.NEEDS_REVIEW),
        SignalWorkflow(workflow_id="w", name="a", payload={"approved": True}),
        TimerFired(workflow_id="w", timer_id="retry:w/a#1", due_at=5),
    ]
    for command in commands:
        data = json.loads(dumps(input_to_dict(command)))
        assert input_from_dict(data) == command


def test_state_round_trips_through_json_losslessly() -> None:
    state = full_run().s
    data = json.loads(dumps(state.to_dict()))
    assert WorkflowState.from_dict(data) == state
    assert WorkflowState.from_dict(data).to_dict() == state.to_dict()


def test_decoding_bad_dicts_raises_value_error_naming_the_problem() -> None:
    with pytest.raises(ValueError, match="unknown event type 'Nope'"):
        event_from_dict({"type": "Nope"})
    with pytest.raises(ValueError, match="StepSucceeded"):
        event_from_dict({"type": "StepSucceeded", "bogus": 1})
    with pytest.raises(ValueError, match="unknown input type"):
        input_from_dict({"workflow_id": "w"})
    with pytest.raises(ValueError, match="WorkflowState"):
        WorkflowState.from_dict({"type": "Other"})


def test_tasks_carry_what_processors_need() -> None:
    d = Driver(workflow(node("a", type="http", queue="io", timeout_ms=9, input={"u": 1})))
    (task,) = tasks_from_events(d.start())
    assert task.to_dict() == {
        "workflow_id": "wf",
        "step_key": "wf/a",
        "node_id": "a",
        "node_type": "http",
        "queue": "io",
        "attempt": 1,
        "input": {"u": 1},
        "timeout_ms": 9,
        "heartbeat_timeout_ms": None,
        "idempotency_key": "wf/a#1",
        "scheduled_at": 1000,
    }


def test_sleep_and_approval_steps_are_not_tasks() -> None:
    d = Driver(
        workflow(node("s", type="sleep", input={"duration_ms": 5}), node("p", type="approval"))
    )
    assert tasks_from_events(d.start()) == []


def test_timers_for_a_batch_match_pending_timers() -> None:
    d = Driver(workflow(node("a", timeout_ms=100, heartbeat_timeout_ms=40), node("b")))
    events = d.start()
    assert [t.timer_id for t in timers_for(d.s, events)] == ["heartbeat:wf/a#1", "timeout:wf/a#1"]
    d.now = 1020
    beat = d.beat("a")
    assert [t.due_at for t in timers_for(d.s, beat)] == [1060, 1100]


def test_event_fold_of_step_rows_matches_state_view() -> None:
    d = full_run()
    rows: dict[str, object] = {}
    for event in d.log:
        if isinstance(event, StepEvent):
            rows[event.step_key] = apply_step_event(rows.get(event.step_key), event)  # type: ignore[arg-type]
    for key, record in d.s.steps.items():
        if record.scheduled_at is None:
            continue
        row = rows[key]
        view = step_view(d.s, record)
        for field in ("status", "attempt", "output", "error_class", "input", "heartbeat_at"):
            assert getattr(row, field) == getattr(view, field), (key, field)


def test_workflow_summary_fold_matches_state() -> None:
    d = full_run()
    d.pause()
    row = None
    for event in d.log:
        row = apply_workflow_event(row, event)
    assert row == summary(d.s)
    assert is_waiting(d.s)
