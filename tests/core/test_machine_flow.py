"""Scheduling rules: parallel ready steps, joins, skips, map fan-out/fan-in, completion."""

from __future__ import annotations

from kflow.core import ErrorClass, is_terminal, replay, verify
from kflow.core.events import (
    MapExpanded,
    StepScheduled,
    StepSkipped,
    WorkflowCompleted,
    WorkflowStarted,
)
from tests.core.driver import Driver, chain, diamond, fan_out, node, scheduled, types, workflow


def test_diamond_runs_branches_in_parallel_and_joins() -> None:
    d = Driver(diamond())
    events = d.start({"x": 1})
    assert types(events) == ["WorkflowStarted", "StepScheduled"]
    assert scheduled(d.ok("a", "A")) == ["b", "c"]
    assert scheduled(d.ok("c", "C")) == []  # d still waits for b
    events = d.ok("b", "B")
    assert scheduled(events) == ["d"]
    events = d.ok("d", "D")
    assert types(events) == ["StepSucceeded", "WorkflowCompleted"]
    assert d.s.status == "completed" and is_terminal(d.s)
    assert d.s.output == {"d": "D"}
    assert [e.seq for e in d.log] == list(range(1, len(d.log) + 1))
    assert replay(d.log) == d.s
    assert verify(d.log) is None


def test_chain_schedules_one_step_at_a_time_with_upstream_output() -> None:
    defn = workflow(node("a"), node("b", "a", input={"got": "$steps.a.output.v", "lit": "$$x"}))
    d = Driver(defn)
    d.start()
    events = d.ok("a", {"v": 7})
    step = next(e for e in events if isinstance(e, StepScheduled))
    assert step.input == {"got": 7, "lit": "$x"}
    assert step.idempotency_key == "wf/b#1"


def test_long_chain_completes_and_seq_is_gapless() -> None:
    d = Driver(chain(50))
    d.start()
    for i in range(50):
        assert d.running() == [f"n{i}"]
        d.ok(f"n{i}", i)
    assert d.s.status == "completed"
    assert d.s.seq == len(d.log)


def test_wide_fan_out_schedules_all_leaves_in_one_decision_sorted() -> None:
    d = Driver(fan_out(30))
    d.start()
    events = d.ok("root")
    assert scheduled(events) == [f"l{i:04d}" for i in range(30)]
    for i in reversed(range(30)):
        d.ok(f"l{i:04d}", i)
    assert d.running() == ["join"]


def test_input_expressions_see_workflow_input() -> None:
    d = Driver(workflow(node("a", input={"user": "$input.user.id", "n": 3})))
    events = d.start({"user": {"id": "u1"}})
    assert events[-1].input == {"user": "u1", "n": 3}  # type: ignore[attr-defined]


def test_false_condition_skips_node_and_nodes_that_depend_only_on_skipped() -> None:
    defn = workflow(
        node("a"),
        node("b", "a", when="steps.a.output.go"),
        node("c", "b"),
        node("d", "a", "c"),
    )
    d = Driver(defn)
    d.start()
    events = d.ok("a", {"go": False})
    skipped = [e.step_key for e in events if isinstance(e, StepSkipped)]
    assert skipped == ["wf/b", "wf/c"]
    assert scheduled(events) == ["d"]  # d has a non-skipped dependency (a)
    d.ok("d")
    assert d.s.status == "completed"


def test_true_condition_runs_node() -> None:
    d = Driver(workflow(node("a"), node("b", "a", when="$steps.a.output.go")))
    d.start()
    assert scheduled(d.ok("a", {"go": True})) == ["b"]


def test_all_nodes_skipped_completes_workflow() -> None:
    d = Driver(workflow(node("a", when="input.run"), node("b", "a")))
    events = d.start({"run": False})
    assert types(events) == ["WorkflowStarted", "StepSkipped", "StepSkipped", "WorkflowCompleted"]
    assert d.s.output == {}


def test_map_fans_out_per_item_and_gathers_outputs_in_order() -> None:
    defn = workflow(
        node("m", for_each="input.items", input={"item": "$item", "i": "$index"}),
        node("after", "m", input={"all": "$steps.m.output"}),
    )
    d = Driver(defn)
    events = d.start({"items": ["x", "y", "z"]})
    expanded = next(e for e in events if isinstance(e, MapExpanded))
    assert expanded.count == 3
    assert scheduled(events) == ["m[0]", "m[1]", "m[2]"]
    assert [e.input for e in events if isinstance(e, StepScheduled)] == [
        {"item": "x", "i": 0},
        {"item": "y", "i": 1},
        {"item": "z", "i": 2},
    ]
    d.ok("m[2]", "Z")
    d.ok("m[0]", "X")
    assert d.status("m") == "running"
    events = d.ok("m[1]", "Y")
    assert d.s.steps["wf/m"].output == ["X", "Y", "Z"]
    after = next(e for e in events if isinstance(e, StepScheduled))
    assert after.input == {"all": ["X", "Y", "Z"]}


def test_map_over_empty_list_succeeds_with_empty_output() -> None:
    d = Driver(workflow(node("m", for_each="input.items")))
    d.start({"items": []})
    assert d.s.status == "completed" and d.s.output == {"m": []}


def test_map_over_non_list_fails_the_node_with_a_clear_message() -> None:
    d = Driver(workflow(node("m", for_each="input.items")))
    d.start({"items": "nope"})
    assert d.s.status == "failed"
    assert "expected a list" in (d.s.steps["wf/m"].message or "")


def test_map_child_retries_independently() -> None:
    d = Driver(workflow(node("m", for_each="input.items", retry={"max_attempts": 2})))
    d.start({"items": [1, 2]})
    d.err("m[1]")
    d.ok("m[0]", "a")
    d.fire_next()
    assert d.attempt("m[1]") == 2
    d.ok("m[1]", "b")
    assert d.s.output == {"m": ["a", "b"]}


def test_map_child_permanent_failure_fails_node_and_cancels_siblings() -> None:
    d = Driver(workflow(node("m", for_each="input.items")))
    d.start({"items": [1, 2, 3]})
    events = d.err("m[1]", ErrorClass.PERMANENT)
    assert types(events) == [
        "StepFailed",
        "StepCancelled",
        "StepCancelled",
        "StepFailed",
        "WorkflowFailed",
    ]
    assert d.status("m[0]") == "cancelled" and d.status("m") == "failed"


def test_sleep_node_is_a_timer_not_a_task() -> None:
    d = Driver(workflow(node("nap", type="sleep", input={"duration_ms": 500}), node("b", "nap")))
    events = d.start()
    step = events[-1]
    assert isinstance(step, StepScheduled) and step.kind == "sleep" and step.due_at == 1500
    events = d.fire_next()
    assert d.now == 1500
    assert scheduled(events) == ["b"]
    assert d.s.steps["wf/nap"].output == {"slept_ms": 500}


def test_sleep_duration_from_expression_and_invalid_duration_fails() -> None:
    defn = workflow(node("nap", type="sleep", input={"duration_ms": "$input.ms"}))
    d = Driver(defn)
    d.start({"ms": "soon"})
    assert d.s.status == "failed"
    assert "duration_ms" in (d.s.steps["wf/nap"].message or "")


def test_started_event_embeds_definition_seed_and_no_second_copy_in_cause() -> None:
    d = Driver(diamond())
    started = d.start({"k": 1})[0]
    assert isinstance(started, WorkflowStarted)
    assert started.definition["nodes"][0]["id"] == "a"
    assert started.cause is not None and "definition" not in started.cause
    assert started.seed == Driver(diamond(), "wf").start()[0].seed  # type: ignore[attr-defined]
    other = Driver(diamond(), "other").start()[0]
    assert isinstance(other, WorkflowStarted) and other.seed != started.seed


def test_completion_event_is_last_and_output_holds_sinks() -> None:
    d = Driver(workflow(node("a"), node("b", "a"), node("c", "a")))
    d.start()
    d.ok("a", 1)
    d.ok("b", 2)
    events = d.ok("c", 3)
    assert isinstance(events[-1], WorkflowCompleted)
    assert events[-1].output == {"b": 2, "c": 3}
