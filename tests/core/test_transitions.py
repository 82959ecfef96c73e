"""One transition table: the read-model row fold equals the rows of the state fold."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any, get_args

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kflow.core import (
    ErrorClass,
    WorkflowDefinition,
    apply_step_event,
    apply_workflow_event,
    event_from_dict,
    evolve,
    is_terminal,
    step_view,
    summary,
)
from kflow.core.events import (
    EVENT_TYPES,
    NOTICE_TYPES,
    Event,
    StepEvent,
    StepTimedOut,
    WorkflowStarted,
)
from kflow.core.state import StepRecord, StepStatus, WorkflowState
from kflow.core.transitions import (
    ERROR_FIELDS,
    ROW_SHOWS,
    STEP_RULES,
    WORKFLOW_RULES,
    StepChanges,
    WorkflowChanges,
)
from kflow.core.views import StepView, WorkflowSummary
from tests.core.driver import Driver, node, workflow
from tests.core.record_histories import HISTORIES
from tests.core.test_properties import SETTINGS, dags, drain, options


def check_rows_at_every_prefix(log: list[Event]) -> int:
    """Fold ``log`` both ways; after every event the rows must equal the state's rows.

    A row exists for every step that had a step event (with that event's seq); steps
    without one are plain ``ready`` records the read model does not show yet.
    Returns the number of step rows compared.
    """
    state: WorkflowState | None = None
    row: WorkflowSummary | None = None
    rows: dict[str, StepView] = {}
    last_seq: dict[str, int] = {}
    compared = 0
    for event in log:
        state = evolve(state, event)
        row = apply_workflow_event(row, event)
        if isinstance(event, StepEvent):
            rows[event.step_key] = apply_step_event(rows.get(event.step_key), event)
            last_seq[event.step_key] = event.seq
        if state is None:
            assert row is None and not rows
            continue
        assert row == summary(state), event
        assert rows.keys() <= state.steps.keys()
        for key, record in state.steps.items():
            if key in rows:
                want = dataclasses.replace(step_view(state, record), seq=last_seq[key])
                assert rows[key] == want, (event, key)
                compared += 1
            else:
                blank = StepRecord(key, record.node_id, record.index, input=record.input)
                assert record == blank, (event, key)
    return compared


@SETTINGS
@given(dag=dags(), data=st.data())
def test_row_fold_equals_rows_of_the_state_fold_at_every_prefix(
    dag: tuple[WorkflowDefinition, dict[str, Any]], data: st.DataObject
) -> None:
    defn, workflow_input = dag
    d = Driver(defn)
    d.start(workflow_input)
    sent: list[Any] = []
    for _ in range(data.draw(st.integers(0, 40))):
        if is_terminal(d.state):
            break
        choices = options(d, sent)
        command = choices[data.draw(st.integers(0, len(choices) - 1))]
        sent.append(command)
        d.send(command, now=d.now + data.draw(st.integers(0, 30)))
    if data.draw(st.booleans()):
        drain(d)
    check_rows_at_every_prefix(d.log)


@pytest.mark.parametrize("path", sorted(HISTORIES.glob("*.json")), ids=lambda p: p.stem)
def test_recorded_histories_fold_to_the_same_rows_both_ways(path: Path) -> None:
    log = [event_from_dict(row) for row in json.loads(path.read_text())]
    assert check_rows_at_every_prefix(log) > len(log) // 2


def test_every_event_type_has_exactly_one_rule() -> None:
    ruled = [*STEP_RULES, *WORKFLOW_RULES, WorkflowStarted, *NOTICE_TYPES]
    assert sorted(t.__name__ for t in ruled) == sorted(EVENT_TYPES)
    assert all(issubclass(t, StepEvent) for t in STEP_RULES)
    assert not any(issubclass(t, StepEvent) for t in WORKFLOW_RULES)


def test_the_tables_name_only_real_fields_and_statuses() -> None:
    record_fields = {f.name for f in dataclasses.fields(StepRecord)}
    view_fields = {f.name for f in dataclasses.fields(StepView)}
    changes = set(StepChanges.__annotations__)
    assert changes - record_fields == {"node_type", "queue"} <= view_fields
    assert set(ERROR_FIELDS) <= record_fields & view_fields
    assert set(ROW_SHOWS) == set(get_args(StepStatus))
    assert all(shown <= set(ERROR_FIELDS) for shown in ROW_SHOWS.values())
    workflow_changes = set(WorkflowChanges.__annotations__)
    assert workflow_changes <= {f.name for f in dataclasses.fields(WorkflowSummary)}
    assert workflow_changes <= {f.name for f in dataclasses.fields(WorkflowState)}


def rows_of(log: list[Event]) -> dict[str, StepView]:
    rows: dict[str, StepView] = {}
    for event in log:
        if isinstance(event, StepEvent):
            rows[event.step_key] = apply_step_event(rows.get(event.step_key), event)
    return rows


def test_rows_show_the_error_that_explains_the_status_and_this_attempts_heartbeat() -> None:
    d = Driver(
        workflow(
            node("a", heartbeat_timeout_ms=50, retry={"max_attempts": 3, "initial_delay_ms": 10}),
            node("r", "a"),
        )
    )
    d.start()
    d.beat("a")
    assert rows_of(d.log)[d.key("a")].heartbeat_at == 1000
    d.err("a", message="flaky")
    backoff = rows_of(d.log)[d.key("a")]
    assert (backoff.status, backoff.error_class, backoff.message) == (
        "backoff",
        "transient",
        "flaky",
    )
    d.fire_next()  # the retry: attempt 2 runs
    running = rows_of(d.log)[d.key("a")]
    assert (running.status, running.attempt) == ("running", 2)
    assert (running.error_class, running.message, running.heartbeat_at) == (None, None, None)
    assert d.s.steps[d.key("a")].error_class == "transient"  # the state keeps the last error
    d.ok("a", {"v": 1})
    done = rows_of(d.log)[d.key("a")]
    assert (done.status, done.error_class, done.output) == ("succeeded", None, {"v": 1})
    d.err("r", ErrorClass.NEEDS_REVIEW, message="look")
    review = rows_of(d.log)[d.key("r")]
    assert (review.status, review.error_class, review.message) == ("review", "needs_review", "look")
    d.cancel()
    cancelled = rows_of(d.log)[d.key("r")]
    assert (cancelled.status, cancelled.error_class, cancelled.message) == ("cancelled", None, None)
    check_rows_at_every_prefix(d.log)


def test_rows_of_steps_never_scheduled_show_no_node_type_queue_or_input() -> None:
    d = Driver(
        workflow(
            node("a"),
            node("m", "a", for_each="steps.a.output", input={"i": "$item"}),
            node("s", "a", when="input.go"),
        )
    )
    d.start({"go": False})
    d.ok("a", [1, 2])
    rows = rows_of(d.log)
    parent, skipped, child = rows[d.key("m")], rows[d.key("s")], rows[d.key("m[0]")]
    assert parent.status == "running"
    assert (parent.node_type, parent.queue, parent.input) == (None, None, None)
    assert (skipped.status, skipped.node_type, skipped.message) == (
        "skipped",
        None,
        "condition 'input.go' is false",
    )
    assert (child.node_type, child.queue, child.input) == ("echo", "echo", {"i": 1})
    check_rows_at_every_prefix(d.log)


def test_a_timeout_moves_only_the_rows_seq() -> None:
    d = Driver(workflow(node("a", timeout_ms=5, retry={"max_attempts": 2})))
    d.start()
    d.fire_next()
    n = next(i for i, e in enumerate(d.log) if isinstance(e, StepTimedOut))
    before, at = rows_of(d.log[:n])[d.key("a")], rows_of(d.log[: n + 1])[d.key("a")]
    assert at == dataclasses.replace(before, seq=d.log[n].seq)
    assert rows_of(d.log)[d.key("a")].status == "backoff"
    check_rows_at_every_prefix(d.log)
