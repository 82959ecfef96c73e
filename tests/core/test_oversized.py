"""Oversized inputs give small events: notices summarise their cause, payloads are bounded.

Issue 11 defect 1 (ADR 0027): an event that copies a refused input whole can be too
large for any Kafka record, and then every batch holding the input fails.
"""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from kflow.bus.contracts import EnvelopeMeta, encode_event
from kflow.core import verify
from kflow.core.errors import ErrorClass
from kflow.core.events import (
    DuplicateStartIgnored,
    Event,
    InputRejected,
    StepFailed,
    StepRetryScheduled,
)
from kflow.core.inputs import StartWorkflow, StepHeartbeat, StepResult
from kflow.core.limits import MAX_MESSAGE_CHARS, NOTICE_FIELD_BYTES
from kflow.core.machine import decide, notice_cause
from tests.core.driver import Driver, node, workflow

BIG = 3 * 1024 * 1024
META = EnvelopeMeta(event_id="e")


def _largest(events: list[Event]) -> int:
    return max(len(encode_event(e, META)) for e in events)


def test_a_result_for_an_unknown_workflow_gets_a_notice_without_the_payload() -> None:
    result = StepResult(workflow_id="ghost", step_key="ghost/a", attempt=1, output="x" * BIG)
    (notice,) = decide(None, result, 5)
    assert isinstance(notice, InputRejected) and notice.code == "unknown_workflow"
    assert notice.cause is not None
    assert notice.cause["output"] is None and notice.cause["elided"] == ["output"]
    assert notice.cause["sizes"] == {"output": BIG + 2}  # the JSON text with its quotes
    assert notice.cause["step_key"] == "ghost/a" and notice.cause["type"] == "StepResult"
    assert _largest([notice]) < 2 * NOTICE_FIELD_BYTES


def test_a_duplicate_start_with_a_huge_input_gets_a_small_notice() -> None:
    d = Driver(workflow(node("a")))
    d.start({"n": 1})
    assert d.defn is not None
    again = StartWorkflow(
        workflow_id="wf", name="test", version=1, input={"pad": "p" * BIG}, definition=d.defn
    )
    (notice,) = d.send(again)
    assert isinstance(notice, DuplicateStartIgnored)
    assert notice.cause is not None and "input" in notice.cause["elided"]
    assert _largest([notice]) < 4 * NOTICE_FIELD_BYTES


def test_oversized_heartbeat_details_and_signal_payloads_are_refused() -> None:
    d = Driver(workflow(node("a", heartbeat_timeout_ms=1000), node("gate", "a", type="approval")))
    d.start()
    beat = StepHeartbeat(workflow_id="wf", step_key=d.key("a"), attempt=1, details="d" * BIG)
    (refused,) = d.send(beat)
    assert isinstance(refused, InputRejected) and refused.code == "payload_too_large"
    assert "limit is 1000000" in refused.reason
    d.ok("a", {"ok": True})
    (refused,) = d.signal("gate", {"approved": True, "b": "b" * BIG})
    assert isinstance(refused, InputRejected) and refused.code == "payload_too_large"
    assert d.status("gate") == "waiting"
    assert _largest(d.log) < 4 * NOTICE_FIELD_BYTES


def test_a_huge_error_message_is_cut_and_the_log_still_verifies() -> None:
    d = Driver(workflow(node("a")))
    d.start()
    (retry,) = d.err("a", message="m" * BIG)
    assert isinstance(retry, StepRetryScheduled)
    assert len(retry.message) == MAX_MESSAGE_CHARS and retry.message.endswith("...")
    assert retry.cause is not None and retry.cause["message"] is None
    d.fire_next()
    (failed, *_) = d.err("a", ErrorClass.PERMANENT, message="short")
    assert isinstance(failed, StepFailed) and failed.message == "short"
    assert _largest(d.log) < 16 * 1024
    assert verify(d.log) is None


@given(st.text(max_size=NOTICE_FIELD_BYTES // 4), st.integers(0, 3 * NOTICE_FIELD_BYTES))
def test_a_notice_cause_keeps_small_fields_whole_and_never_grows_with_the_input(
    step_key: str, pad: int
) -> None:
    result = StepResult(workflow_id="w", step_key=step_key, attempt=1, output="o" * pad)
    cause = notice_cause(result)
    assert cause["step_key"] == step_key
    if pad + 2 <= NOTICE_FIELD_BYTES:
        assert cause["output"] == "o" * pad and "elided" not in cause
    else:
        assert cause["output"] is None and cause["sizes"] == {"output": pad + 2}


def test_a_huge_idempotency_key_is_elided_from_a_notice() -> None:
    result = StepResult(workflow_id="ghost", step_key="ghost/a", attempt=1, output=1)
    cause = notice_cause(result, "k" * BIG)
    assert cause["idempotency_key"] is None and cause["sizes"] == {"idempotency_key": BIG}
    assert notice_cause(result, "key-1")["idempotency_key"] == "key-1"
