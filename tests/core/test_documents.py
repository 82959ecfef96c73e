"""The core carries documents as their text and never writes one that is not JSON (ADR 0026)."""

from __future__ import annotations

import json

from kflow.bus.codec import AvroCodec
from kflow.bus.contracts import EnvelopeMeta, decode, encode_event
from kflow.core import verify
from kflow.core.events import (
    Event,
    InputRejected,
    MapExpanded,
    StepFailed,
    StepHeartbeatRecorded,
    StepScheduled,
    StepSucceeded,
    WorkflowCompleted,
    WorkflowRejected,
    WorkflowSignalled,
)
from kflow.core.inputs import SignalWorkflow, StartWorkflow, StepHeartbeat, StepResult
from kflow.core.jsondoc import Json
from tests.core.driver import Driver, node, workflow

SPACED = '{ "x" : [1, 2.50, 18446744073709551616], "s": "\\ud800" }'
"""Valid JSON that kflow would not write itself: it must come out exactly as it went in."""
META = EnvelopeMeta(event_id="e")


def written(events: list[Event]) -> list[dict[str, object]]:
    """Each event as it goes to the log; every JSON field of it must parse with ``json``."""
    out = []
    for event in events:
        data = encode_event(event, META)
        _, record = AvroCodec().decode(data)
        _, body = record["body"]
        for name in ("cause", "input", "output", "payload", "details", "inputs"):
            if body.get(name) is not None:
                json.loads(body[name])
        assert decode(data).body == event
        out.append(body)
    return out


def scheduled(d: Driver, node_id: str) -> StepScheduled:
    return [e for e in d.log if isinstance(e, StepScheduled) and e.node_id == node_id][-1]


def test_outputs_travel_as_their_text_into_inputs_and_the_workflow_output() -> None:
    d = Driver(
        workflow(
            node("a"),
            node("whole", "a", input={"a": "$steps.a.output"}),
            node("inner", "a", input={"v": "$steps.a.output", "first": "$steps.a.output.x[0]"}),
        )
    )
    d.start({"n": 1})
    d.ok("a", Json.from_text(SPACED))
    (succeeded,) = [e for e in d.log if isinstance(e, StepSucceeded)]
    assert succeeded.output.text == SPACED
    assert scheduled(d, "whole").input.text == f'{{"a":{SPACED}}}'
    assert scheduled(d, "inner").input.text == f'{{"v":{SPACED},"first":1}}'
    d.ok("whole", Json.from_text(" [true] "))
    d.ok("inner", Json.from_text("7"))
    completed = d.log[-1]
    assert isinstance(completed, WorkflowCompleted)
    assert completed.output.text == '{"inner":7,"whole": [true] }'
    assert completed.output.value == {"inner": 7, "whole": [True]}
    written(d.log)
    assert verify(d.log) is None


def test_map_children_and_the_map_output_are_embedded_not_re_encoded() -> None:
    d = Driver(workflow(node("a"), node("m", "a", for_each="steps.a.output", input={"i": "$item"})))
    d.start()
    d.ok("a", [{"k": 1}, {"k": 2}])
    (expanded,) = [e for e in d.log if isinstance(e, MapExpanded)]
    assert [i.text for i in expanded.inputs] == ['{"i":{"k":1}}', '{"i":{"k":2}}']
    d.ok("m[0]", Json.from_text(' "zero" '))
    d.ok("m[1]", Json.from_text("1.0"))
    parent = [e for e in d.log if isinstance(e, StepSucceeded) and e.step_key == "wf/m"][-1]
    assert parent.output.text == '[ "zero" ,1.0]'
    written(d.log)
    assert verify(d.log) is None


def test_an_output_that_is_not_json_fails_the_step_and_stays_out_of_the_log() -> None:
    for text in ("{oops", "[NaN]", '{"x": -Infinity}', "[1e999]"):
        d = Driver(workflow(node("a")))
        d.start()
        d.ok("a", Json.from_text(text))
        failed = next(e for e in d.log if isinstance(e, StepFailed))
        assert failed.error_type == "InvalidOutput" and d.s.status == "failed"
        assert failed.cause is not None and failed.cause["output"] is None
        assert failed.cause["elided"] == ["output"]
        assert all(text not in json.dumps(body) for body in written(d.log))
        assert verify(d.log) is None


def test_an_input_that_is_not_json_is_rejected_and_not_recorded() -> None:
    d = Driver(workflow(node("a")))
    for text in ("{oops", "NaN"):
        (event,) = d.send(
            StartWorkflow(
                workflow_id="wf", name="test", version=1, input=Json.from_text(text),
                definition=d.defn,
            )
        )  # fmt: skip
        assert isinstance(event, WorkflowRejected) and event.code == "invalid_input"
        assert event.cause is not None and event.cause["elided"] == ["input"]
        written([event])
    (event,) = d.send(
        StartWorkflow(workflow_id="wf", name="none", version=1, input=Json.from_text("{"))
    )
    assert isinstance(event, WorkflowRejected) and event.code == "unknown_definition"
    assert event.cause is not None and event.cause["input"] is None
    written([event])


def test_results_for_unknown_steps_with_bad_output_are_refused_without_it() -> None:
    d = Driver(workflow(node("a")))
    d.start()
    bad = StepResult(workflow_id="wf", step_key="wf/nope", attempt=1, output=Json.from_text("}"))
    (event,) = d.send(bad)
    assert isinstance(event, InputRejected) and event.code == "unknown_step"
    assert event.cause is not None and event.cause["output"] is None
    written([event])


def test_signal_payloads_and_heartbeat_details_keep_their_text_or_are_refused() -> None:
    d = Driver(workflow(node("a", heartbeat_timeout_ms=100), node("ok", "a", type="approval")))
    d.start()
    beat = StepHeartbeat(workflow_id="wf", step_key="wf/a", attempt=1, details=Json.from_text("{"))
    (refused,) = d.send(beat)
    assert isinstance(refused, InputRejected) and refused.code == "invalid_details"
    fine = StepHeartbeat(
        workflow_id="wf", step_key="wf/a", attempt=1, details=Json.from_text(" 1 ")
    )
    (recorded,) = d.send(fine)
    assert isinstance(recorded, StepHeartbeatRecorded) and recorded.details.text == " 1 "
    d.ok("a")
    (refused,) = d.send(SignalWorkflow(workflow_id="wf", name="ok", payload=Json.from_text("[")))
    assert isinstance(refused, InputRejected) and refused.code == "invalid_signal"
    payload = '{"approved": true, "by": "\\ud800"}'
    d.send(SignalWorkflow(workflow_id="wf", name="ok", payload=Json.from_text(payload)))
    signalled = next(e for e in d.log if isinstance(e, WorkflowSignalled))
    approved = [e for e in d.log if isinstance(e, StepSucceeded) and e.step_key == "wf/ok"][-1]
    assert signalled.payload.text == payload and approved.output.text == payload
    assert d.s.status == "completed"
    written(d.log)
    assert verify(d.log) is None
