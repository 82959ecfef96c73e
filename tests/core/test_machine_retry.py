"""RetryWorkflow: a failed or cancelled run reopens from the steps that did not finish."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from kflow.core import ErrorClass, WorkflowDefinition, is_terminal
from kflow.core.events import (
    InputRejected,
    StepReopened,
    StepScheduled,
    WorkflowRetried,
)
from kflow.core.inputs import CancelWorkflow, Input, RetryWorkflow
from kflow.core.views import summary
from tests.core.driver import Driver, diamond, node, workflow
from tests.core.test_properties import SETTINGS, check_log, dags, drain, options
from tests.core.test_transitions import check_rows_at_every_prefix


def retry(d: Driver, reason: str = "") -> list[Any]:
    return d.send(RetryWorkflow(workflow_id=d.workflow_id, reason=reason))


def failed_diamond() -> Driver:
    d = Driver(diamond())
    d.start()
    d.ok("a", {"a": 1})
    d.ok("b", {"b": 2})
    d.err("c", ErrorClass.PERMANENT)
    assert d.s.status == "failed"
    return d


def test_retry_reruns_the_failed_step_as_its_next_attempt_and_keeps_completed_results() -> None:
    d = failed_diamond()
    events = retry(d, "fixed the bug")
    assert [type(e).__name__ for e in events] == [
        "WorkflowRetried",
        "StepReopened",
        "StepScheduled",
    ]
    retried = events[0]
    assert isinstance(retried, WorkflowRetried)
    assert (retried.previous_status, retried.reason) == ("failed", "fixed the bug")
    assert retried.cause == {
        "type": "RetryWorkflow",
        "workflow_id": "wf",
        "reason": "fixed the bug",
    }
    scheduled = events[2]
    assert isinstance(scheduled, StepScheduled)
    assert (scheduled.step_key, scheduled.attempt) == (d.key("c"), 2)
    assert scheduled.idempotency_key == f"{d.key('c')}#2"
    assert d.s.status == "running" and d.s.finished_at is None and d.s.reason == ""
    assert d.s.steps[d.key("a")].output.value == {"a": 1}
    d.ok("c", {"c": 3})
    d.ok("d", "done")
    assert d.s.status == "completed"
    scheduled_keys = [(e.step_key, e.attempt) for e in d.log if isinstance(e, StepScheduled)]
    assert scheduled_keys.count((d.key("a"), 1)) == 1 and (d.key("a"), 2) not in scheduled_keys
    check_log(d.log, d.s)


def test_retry_of_a_cancelled_run_reopens_running_and_never_scheduled_steps() -> None:
    d = Driver(workflow(node("a"), node("b"), node("c", "a")))
    d.start()
    d.ok("a")  # c becomes running; b is still running
    d.send(CancelWorkflow(workflow_id="wf", reason="oops"))
    assert d.s.status == "cancelled"
    events = retry(d)
    reopened = [(e.step_key, e.attempt) for e in events if isinstance(e, StepReopened)]
    assert reopened == [(d.key("b"), 2), (d.key("c"), 2)]
    assert events[0].previous_status == "cancelled"  # type: ignore[attr-defined]
    d.ok("b")
    d.ok("c")
    assert d.s.status == "completed"
    check_log(d.log, d.s)


def test_retry_of_a_failed_map_reruns_only_the_failed_and_cancelled_children() -> None:
    defn = workflow(node("m", type="echo", for_each="$input.items", input={"x": "$item"}))
    d = Driver(defn)
    d.start({"items": [1, 2, 3]})
    d.ok("m[0]", "zero")
    d.err("m[1]", ErrorClass.PERMANENT)
    assert d.s.status == "failed"
    events = retry(d)
    reopened = {e.step_key: (e.attempt, e.status) for e in events if isinstance(e, StepReopened)}
    assert reopened == {
        d.key("m"): (1, "running"),
        d.key("m[1]"): (2, "ready"),
        d.key("m[2]"): (2, "ready"),
    }
    d.ok("m[1]", "one")
    d.ok("m[2]", "two")
    assert d.s.status == "completed"
    assert d.s.steps[d.key("m")].output.value == ["zero", "one", "two"]
    check_log(d.log, d.s)


def test_retry_is_refused_with_a_reason_unless_the_run_failed_or_was_cancelled() -> None:
    d = Driver(diamond())
    events = retry(d)
    assert isinstance(events[0], InputRejected) and events[0].code == "unknown_workflow"
    d.start()
    (notice,) = retry(d)
    assert isinstance(notice, InputRejected)
    assert (notice.code, notice.seq) == ("not_retryable", 0)
    assert "running" in notice.reason and "failed or cancelled" in notice.reason
    for local in ("a", "b", "c", "d"):
        d.ok(local)
    (notice,) = retry(d)
    assert isinstance(notice, InputRejected) and notice.code == "not_retryable"


def test_a_step_that_failed_with_continue_is_not_rerun() -> None:
    d = Driver(workflow(node("a", on_failure="continue"), node("b")))
    d.start()
    d.err("a", ErrorClass.PERMANENT)
    d.err("b", ErrorClass.PERMANENT)
    assert d.s.status == "failed"
    events = retry(d)
    assert [e.step_key for e in events if isinstance(e, StepReopened)] == [d.key("b")]


def test_rows_follow_a_retry_like_the_state_at_every_prefix() -> None:
    d = failed_diamond()
    retry(d)
    d.ok("c")
    assert check_rows_at_every_prefix(d.log) > 0
    assert summary(d.s).finished_at is None


def _with_retries(d: Driver, sent: list[Input]) -> list[Input]:
    if d.s.status in ("failed", "cancelled"):
        return [RetryWorkflow(workflow_id=d.workflow_id), *sent[-2:]]
    return options(d, sent)


@SETTINGS
@given(dag=dags(), data=st.data())
def test_random_runs_with_retries_keep_every_completed_result_and_replay_exactly(
    dag: tuple[WorkflowDefinition, dict[str, Any]], data: st.DataObject
) -> None:
    defn, workflow_input = dag
    d = Driver(defn)
    d.start(workflow_input)
    sent: list[Input] = []
    for _ in range(data.draw(st.integers(0, 60))):
        if d.s.status == "completed":
            break
        choices = _with_retries(d, sent)
        command = choices[data.draw(st.integers(0, len(choices) - 1))]
        before = dict(d.s.steps)
        events = d.send(command, now=d.now + data.draw(st.integers(0, 30)))
        sent.append(command)
        if (
            isinstance(command, RetryWorkflow)
            and events
            and not isinstance(events[0], InputRejected)
        ):
            for key, record in before.items():
                if record.status in ("succeeded", "skipped"):
                    assert d.s.steps[key] == record, f"{key} changed by the retry"
            assert not any(
                isinstance(e, StepScheduled)
                and before.get(e.step_key) is not None
                and before[e.step_key].status == "succeeded"
                for e in events
            )
    if d.s.status in ("failed", "cancelled"):
        retry(d)
    drain(d)
    assert is_terminal(d.state)
    check_log(d.log, d.s)
    assert check_rows_at_every_prefix(d.log) > 0


def test_a_retry_repeating_its_idempotency_key_is_not_applied_twice() -> None:
    d = failed_diamond()
    first = d.send(RetryWorkflow(workflow_id="wf", reason="r"), key="retry-1")
    assert isinstance(first[0], WorkflowRetried)
    d.err("c", ErrorClass.PERMANENT)  # fails again
    assert d.s.status == "failed"
    (again,) = d.send(RetryWorkflow(workflow_id="wf", reason="r"), key="retry-1")
    assert isinstance(again, InputRejected) and again.code == "duplicate_command"
    fresh = d.send(RetryWorkflow(workflow_id="wf"), key="retry-2")
    assert isinstance(fresh[0], WorkflowRetried)
    check_log(d.log, d.s)
