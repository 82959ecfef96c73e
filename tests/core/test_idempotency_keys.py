"""Commands carrying an idempotency key are applied once (issue 11, defect 10; ADR 0018)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from kflow.core import verify
from kflow.core.events import DuplicateStartIgnored, InputRejected, WorkflowStarted
from kflow.core.fold import evolve_all
from kflow.core.inputs import (
    CancelWorkflow,
    PauseWorkflow,
    ResumeWorkflow,
    SignalWorkflow,
    StartWorkflow,
)
from kflow.core.state import MAX_COMMAND_KEYS, WorkflowState
from tests.core.driver import Driver, node, types, workflow

WID = "wf"


def pause() -> PauseWorkflow:
    return PauseWorkflow(workflow_id=WID, reason="ops")


def resume() -> ResumeWorkflow:
    return ResumeWorkflow(workflow_id=WID)


def gated() -> Driver:
    d = Driver(workflow(node("a"), {"id": "gate", "type": "approval", "depends_on": ["a"]}))
    d.start()
    d.ok("a")
    return d


def test_a_repeated_pause_with_its_key_is_answered_as_a_duplicate_not_applied_again() -> None:
    d = gated()
    assert types(d.send(pause(), key="k-1")) == ["WorkflowPaused"]
    paused_at = d.s.seq
    assert types(d.send(resume())) == ["WorkflowResumed"]
    seq = d.s.seq
    again = d.send(pause(), key="k-1")  # the producer retried: must not pause again
    assert len(again) == 1 and isinstance(again[0], InputRejected)
    assert again[0].code == "duplicate_command" and again[0].seq == 0
    assert f"already applied at seq {paused_at}" in again[0].reason
    assert d.s.seq == seq and d.s.status == "running"
    assert types(d.send(pause(), key="k-2")) == ["WorkflowPaused"]  # a new key applies
    assert verify(d.log) is None  # re-deciding from the log gives the same answers


def test_a_repeated_signal_and_cancel_keep_their_first_outcome() -> None:
    d = gated()
    signal = SignalWorkflow(workflow_id=WID, name="gate", payload={"approved": True})
    assert types(d.send(signal, key="s-1"))[0] == "WorkflowSignalled"
    assert d.s.status == "completed"
    again = d.send(signal, key="s-1")
    assert isinstance(again[0], InputRejected) and again[0].code == "duplicate_command"
    unkeyed = d.send(signal)  # without a key it is decided against the state, as before
    assert isinstance(unkeyed[0], InputRejected) and unkeyed[0].code == "workflow_finished"

    c = gated()
    cancel = CancelWorkflow(workflow_id=WID, reason="dup")
    assert types(c.send(cancel, key="c-1"))[-1] == "WorkflowCancelled"
    retried = c.send(cancel, key="c-1")
    assert isinstance(retried[0], InputRejected) and retried[0].code == "duplicate_command"
    assert verify(c.log) is None


def test_a_key_reused_for_another_command_kind_is_refused() -> None:
    d = gated()
    d.send(pause(), key="k")
    reused = d.send(resume(), key="k")
    assert isinstance(reused[0], InputRejected) and reused[0].code == "idempotency_key_reused"
    assert d.s.status == "paused"


def test_refusals_are_not_remembered_and_a_start_records_its_key() -> None:
    d = Driver(workflow(node("a")))
    started = d.send(
        StartWorkflow(workflow_id=WID, name="test", version=1, definition=d.defn), key="start-1"
    )
    assert isinstance(started[0], WorkflowStarted)
    assert started[0].cause is not None and started[0].cause["idempotency_key"] == "start-1"
    assert d.s.applied_key("start-1") == ("start-1", "StartWorkflow", 1)
    again = d.send(
        StartWorkflow(workflow_id=WID, name="test", version=1, definition=d.defn), key="start-1"
    )
    assert isinstance(again[0], DuplicateStartIgnored)
    refused = d.send(resume(), key="r-1")  # not paused: refused, and nothing is remembered
    assert isinstance(refused[0], InputRejected) and refused[0].code == "not_applicable"
    assert d.s.applied_key("r-1") is None
    assert verify(d.log) is None


def test_the_keys_are_folded_from_the_log_bounded_and_survive_a_snapshot() -> None:
    d = gated()
    for i in range(MAX_COMMAND_KEYS + 6):
        d.send(pause() if i % 2 == 0 else resume(), key=f"k-{i}")
    state = d.s
    assert len(state.command_keys) == MAX_COMMAND_KEYS
    assert state.applied_key("k-0") is None and state.applied_key("k-6") is not None
    assert evolve_all(None, d.log) == state
    assert WorkflowState.from_dict(state.to_dict()) == state
    assert verify(d.log) is None


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.integers(0, 5)), max_size=25))
def test_each_key_changes_the_state_at_most_once(commands: list[tuple[bool, int]]) -> None:
    d = gated()
    applied: list[str] = []
    for is_pause, key_number in commands:
        key = f"{'p' if is_pause else 'r'}-{key_number}"
        events = d.send(pause() if is_pause else resume(), key=key)
        if events and events[0].seq:
            assert key not in applied
            applied.append(key)
    assert evolve_all(None, d.log) == d.s
    assert verify(d.log) is None


def test_an_oversized_key_is_refused_and_not_recorded() -> None:
    d = gated()
    long_key = "k" * 10_000
    refused = d.send(pause(), key=long_key)
    assert isinstance(refused[0], InputRejected) and refused[0].code == "invalid_idempotency_key"
    assert refused[0].cause is not None and refused[0].cause["idempotency_key"] is None
    assert d.s.status == "running" and d.s.command_keys == ()
    fresh = Driver(workflow(node("a")))
    start = StartWorkflow(workflow_id=WID, name="test", version=1, definition=fresh.defn)
    rejected = fresh.send(start, key=long_key)
    assert types(rejected) == ["WorkflowRejected"]
    assert verify(d.log) is None
