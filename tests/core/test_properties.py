"""Property tests: random DAGs driven by random result orders, duplicates and failures."""

from __future__ import annotations

import contextlib
import json
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kflow.core import (
    DefinitionError,
    ErrorClass,
    WorkflowDefinition,
    event_from_dict,
    event_to_dict,
    evolve,
    is_terminal,
    is_waiting,
    parse_definition,
    pending_timers,
    replay,
    validate_definition,
    verify,
)
from kflow.core.events import Event, StepScheduled
from kflow.core.inputs import (
    CancelWorkflow,
    Input,
    PauseWorkflow,
    ResumeWorkflow,
    SignalWorkflow,
    StepError,
    StepHeartbeat,
    StepResult,
    TimerFired,
)
from kflow.core.jsondoc import dumps
from kflow.core.state import FINISHED_STEP, WorkflowState
from tests.core.driver import Driver

SETTINGS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def dags(draw: st.DrawFn) -> tuple[WorkflowDefinition, dict[str, Any]]:
    count = draw(st.integers(1, 9))
    nodes = []
    flags: list[bool] = []
    lists: list[list[int]] = []
    for i in range(count):
        deps: set[int] = draw(st.sets(st.integers(0, i - 1), max_size=3)) if i else set()
        spec: dict[str, Any] = {
            "id": f"n{i}",
            "type": draw(st.sampled_from(["echo"] * 6 + ["sleep", "approval"])),
            "depends_on": [f"n{d}" for d in sorted(deps)],
            "retry": {"max_attempts": draw(st.integers(1, 3)), "initial_delay_ms": 10},
            "on_failure": draw(st.sampled_from(["fail_workflow", "continue", "pause"])),
        }
        if spec["type"] == "sleep":
            spec["input"] = {"duration_ms": draw(st.integers(0, 50))}
        elif len(deps) > 0 and draw(st.booleans()):
            spec["input"] = {"up": f"$steps.n{min(deps)}.output"}
        if draw(st.integers(0, 4)) == 0:
            spec["when"] = f"input.flags[{i}]"
        if spec["type"] == "echo" and draw(st.integers(0, 4)) == 0:
            spec["for_each"] = f"input.lists[{i}]"
            spec["input"] = {"item": "$item"}
        if spec["type"] == "echo" and draw(st.booleans()):
            spec["timeout_ms"] = draw(st.integers(1, 100))
        if spec["type"] == "echo" and draw(st.integers(0, 2)) == 0:
            spec["heartbeat_timeout_ms"] = draw(st.integers(1, 60))
        flags.append(draw(st.booleans()))
        lists.append(draw(st.lists(st.integers(0, 9), max_size=3)))
        nodes.append(spec)
    defn = parse_definition({"name": "prop", "nodes": nodes})
    return defn, {"flags": flags, "lists": lists}


def options(d: Driver, sent: list[Input]) -> list[Input]:
    """Every input that could plausibly arrive next, in a deterministic order."""
    s = d.s
    wf = s.workflow_id
    found: list[Input] = []
    for key in sorted(s.steps):
        record = s.steps[key]
        if record.status == "running" and record.kind == "task":
            found.append(
                StepResult(workflow_id=wf, step_key=key, attempt=record.attempt, output=key)
            )
            if record.heartbeat_timeout_ms is not None:
                found.append(StepHeartbeat(workflow_id=wf, step_key=key, attempt=record.attempt))
            for error_class in ErrorClass:
                found.append(
                    StepError(
                        workflow_id=wf,
                        step_key=key,
                        attempt=record.attempt,
                        error_class=error_class,
                    )
                )
        if record.status == "review" or (record.status == "waiting" and record.kind == "approval"):
            local = key[len(wf) + 1 :]
            for approved in (True, False):
                found.append(
                    SignalWorkflow(workflow_id=wf, name=local, payload={"approved": approved})
                )
    for timer in pending_timers(s):
        found.append(TimerFired(workflow_id=wf, timer_id=timer.timer_id, due_at=timer.due_at))
    found.append(
        ResumeWorkflow(workflow_id=wf) if s.status == "paused" else PauseWorkflow(workflow_id=wf)
    )
    found.append(CancelWorkflow(workflow_id=wf))
    found.extend(sent[-3:])  # duplicates / late deliveries
    return found


def drain(d: Driver) -> None:
    """Finish deterministically: resume, succeed tasks, approve, fire timers."""
    for _ in range(500):
        if is_terminal(d.state):
            return
        s = d.s
        wf = s.workflow_id
        if s.status == "paused":
            d.send(ResumeWorkflow(workflow_id=wf))
            continue
        key = next(
            (
                k
                for k in sorted(s.steps)
                if s.steps[k].status in ("running", "review", "waiting")
                and s.steps[k].kind != "map"
            ),
            None,
        )
        record = s.steps[key] if key else None
        if record is not None and record.status == "running" and record.kind == "task":
            d.send(StepResult(workflow_id=wf, step_key=record.step_key, attempt=record.attempt))
        elif record is not None and record.kind != "sleep" and record.status != "running":
            local = record.step_key[len(wf) + 1 :]
            d.send(
                SignalWorkflow(workflow_id=wf, name=local, payload={"approved": True, "output": 1})
            )
        else:
            assert pending_timers(s), f"stuck: {s.status} {dict(s.steps)} ready={s.ready}"
            d.fire_next()
    raise AssertionError(f"workflow did not finish: {d.s.status}")


def check_log(log: list[Event], final: WorkflowState) -> None:
    seen: set[tuple[str, int]] = set()
    state: WorkflowState | None = None
    for event in log:
        if isinstance(event, StepScheduled):
            ident = (event.step_key, event.attempt)
            assert ident not in seen, f"{ident} scheduled twice"
            seen.add(ident)
            if event.index is None and state is not None:
                node = state.graph.nodes[event.node_id]
                for dep in node.depends_on:
                    dep_record = state.steps.get(f"{state.workflow_id}/{dep}")
                    assert dep_record is not None and dep_record.status in FINISHED_STEP
        assert event_from_dict(json.loads(dumps(event_to_dict(event)))) == event
        state = evolve(state, event)
    assert state == final
    assert replay(log) == final
    assert verify(log) is None
    assert type(final).from_dict(json.loads(dumps(final.to_dict()))) == final


@SETTINGS
@given(dag=dags(), data=st.data())
def test_random_runs_stay_consistent_and_always_finish_or_wait_visibly(
    dag: tuple[WorkflowDefinition, dict[str, Any]], data: st.DataObject
) -> None:
    defn, workflow_input = dag
    d = Driver(defn)
    d.start(workflow_input)
    sent: list[Input] = []
    for _ in range(data.draw(st.integers(0, 40))):
        if is_terminal(d.state):
            break
        choices = options(d, sent)
        command = choices[data.draw(st.integers(0, len(choices) - 1))]
        sent.append(command)
        d.send(command, now=d.now + data.draw(st.integers(0, 30)))
        s = d.s
        quiet = not any(
            r.status in ("running", "backoff") or (r.status == "waiting" and r.kind == "sleep")
            for r in s.steps.values()
        )
        if quiet and not is_terminal(s):
            assert is_waiting(s), "nothing in flight yet not finished and not waiting"
    drain(d)
    check_log(d.log, d.s)


# ---- invalid definitions -------------------------------------------------------------------

DEFECTS = [
    "cycle",
    "unknown_dep",
    "duplicate",
    "bad_expr",
    "not_upstream",
    "empty",
    "bad_id",
    "self",
]


@st.composite
def invalid_definitions(draw: st.DrawFn) -> dict[str, Any]:
    count = draw(st.integers(2, 7))
    nodes: list[dict[str, Any]] = [
        {"id": f"n{i}", "type": "t", "depends_on": [f"n{i - 1}"] if i else []} for i in range(count)
    ]
    defect = draw(st.sampled_from(DEFECTS))
    i = draw(st.integers(0, count - 2))
    if defect == "cycle":
        nodes[i]["depends_on"].append(f"n{draw(st.integers(i + 1, count - 1))}")
    elif defect == "unknown_dep":
        nodes[i]["depends_on"].append(draw(st.text(min_size=1, max_size=5)) + "_missing")
    elif defect == "duplicate":
        nodes[i + 1]["id"] = nodes[i]["id"]
    elif defect == "bad_expr":
        nodes[i]["input"] = {"x": "$" + draw(st.sampled_from(["[", "a ==", "foo(", "`x", "[?"]))}
    elif defect == "not_upstream":
        nodes[i]["input"] = {"x": f"$steps.n{draw(st.integers(i + 1, count - 1))}.output"}
    elif defect == "empty":
        nodes = []
    elif defect == "bad_id":
        nodes[i]["id"] = draw(st.sampled_from(["", "1x", "a-b", "a b", "ä"]))
    elif defect == "self":
        nodes[i]["depends_on"].append(nodes[i]["id"])
    return {"name": "bad", "nodes": nodes}


@settings(max_examples=150, deadline=None)
@given(invalid_definitions())
def test_invalid_definitions_always_raise_definition_error(data: dict[str, Any]) -> None:
    try:
        validate_definition(parse_definition(data))
    except DefinitionError as exc:
        assert exc.problems and all(p.path and p.message and p.fix for p in exc.problems)
    else:
        raise AssertionError(f"accepted an invalid definition: {data}")


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=20,
)


@settings(max_examples=150, deadline=None)
@given(
    st.fixed_dictionaries(
        {
            "name": json_values,
            "nodes": st.lists(
                st.dictionaries(
                    st.sampled_from(
                        [
                            "id",
                            "type",
                            "depends_on",
                            "input",
                            "when",
                            "for_each",
                            "retry",
                            "timeout_ms",
                        ]
                    ),
                    json_values,
                    max_size=6,
                ),
                max_size=4,
            ),
        }
    )
)
def test_arbitrary_json_never_raises_anything_but_definition_error(data: dict[str, Any]) -> None:
    with contextlib.suppress(DefinitionError):
        validate_definition(parse_definition(data))


garbage_inputs = st.one_of(
    st.builds(
        StepResult,
        workflow_id=st.just("wf"),
        step_key=st.sampled_from(["wf/n0", "wf/n1", "wf/n0[0]", "wf/", "x", "wf/n0[9]"]),
        attempt=st.integers(-1, 4),
        output=json_values,
    ),
    st.builds(
        StepError,
        workflow_id=st.just("wf"),
        step_key=st.sampled_from(["wf/n0", "wf/n1", "wf/zz"]),
        attempt=st.integers(0, 3),
        error_class=st.sampled_from(list(ErrorClass)),
        message=st.text(max_size=5),
    ),
    st.builds(
        SignalWorkflow, workflow_id=st.just("wf"), name=st.text(max_size=6), payload=json_values
    ),
    st.builds(
        TimerFired,
        workflow_id=st.just("wf"),
        timer_id=st.sampled_from(
            ["retry:wf/n0#1", "sleep:wf/n0#1", "timeout:wf/n0#1", "x:y#z", ":#"]
        ),
        due_at=st.integers(0, 5000),
    ),
)


@settings(max_examples=100, deadline=None)
@given(dag=dags(), commands=st.lists(garbage_inputs, max_size=8))
def test_decide_never_raises_on_arbitrary_inputs(
    dag: tuple[WorkflowDefinition, dict[str, Any]], commands: list[Input]
) -> None:
    defn, workflow_input = dag
    d = Driver(defn)
    d.start(workflow_input)
    for command in commands:
        d.send(command, now=d.now + 10)
    check_log(d.log, d.s)
