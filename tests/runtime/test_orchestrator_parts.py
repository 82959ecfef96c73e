"""The orchestrator's in-memory parts: timer heap, staged workflow table, definitions store."""

from __future__ import annotations

import json
from typing import Any

import pytest

from kflow.bus.contracts import Envelope, default_contracts
from kflow.bus.message import BusMessage
from kflow.bus.principals import PrincipalKey
from kflow.bus.records import WorkflowDefinitionRecord
from kflow.bus.signing import Signer
from kflow.bus.topics import topic_names
from kflow.core.definition import parse_definition
from kflow.core.inputs import Input, StartWorkflow, StepHeartbeat, StepResult
from kflow.core.machine import decide, evolve_all
from kflow.core.state import WorkflowState
from kflow.orchestrator.closed import (
    ClosedIds,
    ClosedMarker,
    MarkerError,
    decode_marker,
    duplicate_of_closed,
    encode_marker,
)
from kflow.orchestrator.handler import OrchestratorHandler
from kflow.orchestrator.identity import Authenticator
from kflow.orchestrator.snapshots import SnapshotEncoder
from kflow.orchestrator.table import WorkflowTable
from kflow.orchestrator.timers import TimerHeap
from kflow.registry.checked import check_record
from kflow.registry.store import DefinitionStore, Refused

DEFINITION = parse_definition({"name": "one", "nodes": [{"id": "a", "type": "echo"}]})


def started(workflow_id: str) -> WorkflowState:
    command = StartWorkflow(workflow_id=workflow_id, name="one", version=1, definition=DEFINITION)
    state = evolve_all(None, decide(None, command, 1))
    assert state is not None
    return state


def test_timer_heap_pops_due_timers_in_order_once() -> None:
    heap = TimerHeap()
    heap.schedule("w1", [("retry:w1/a#1", 30), ("timeout:w1/a#1", 10)])
    heap.schedule("w1", [("timeout:w1/a#1", 10)])  # already known: not added twice
    heap.schedule("w2", [("sleep:w2/b#1", 20)])
    assert heap.pop_due(5, 10) == []
    assert heap.pop_due(25, 10) == [("w1", "timeout:w1/a#1", 10), ("w2", "sleep:w2/b#1", 20)]
    heap.drop_workflows({"w1"})
    assert heap.pop_due(100, 10) == [] and len(heap) == 0


def test_table_stages_until_commit_and_discards_on_rollback() -> None:
    table = WorkflowTable()
    state = started("w1")
    table.stage(state, partition=3)
    assert table.get("w1") is state and table.partition_of("w1") == 3
    table.discard()
    assert table.get("w1") is None
    table.stage(state, partition=3)
    assert table.commit() == [state]
    assert table.get("w1") is state and len(table) == 1
    assert table.drop_partitions({3}) == {"w1"} and table.get("w1") is None


def test_definition_store_resolves_latest_and_exact_versions() -> None:
    store = DefinitionStore()
    store.put(DEFINITION)
    store.put(DEFINITION.model_copy(update={"version": 2}))
    latest = store.resolve("one", 0)
    assert latest is not None and latest.version == 2
    exact = store.resolve("one", 1)
    assert exact is not None and exact.version == 1
    assert store.resolve("one", 3) is None and store.resolve("other") is None
    store.remove("one", 2)
    again = store.resolve("one")
    assert again is not None and again.version == 1


CYCLIC: dict[str, Any] = {
    "name": "one",
    "version": 2,
    "nodes": [
        {"id": "a", "type": "echo", "depends_on": ["b"]},
        {"id": "b", "type": "echo", "depends_on": ["a"]},
    ],
}


def _record(definition: dict[str, Any]) -> tuple[str, bytes]:
    record = WorkflowDefinitionRecord(
        name=definition["name"],
        version=definition["version"],
        definition=definition,
        registered_at=1,
    )
    return record.key, default_contracts().encode_definition(record)


def test_definition_records_are_checked_before_they_register_anything() -> None:
    ok = check_record(*_record(DEFINITION.to_dict()))
    assert ok.definition == DEFINITION and ok.refusal is None
    assert ok.document == DEFINITION.to_dict()
    key, value = _record(CYCLIC)
    cyclic = check_record(key, value)
    assert cyclic.definition is None and cyclic.refusal is not None
    assert cyclic.refusal.reason == "invalid_definition"
    assert "dependency cycle: a -> b -> a" in cyclic.refusal.message
    assert cyclic.parsed is not None and (cyclic.name, cyclic.version) == ("one", 2)
    misfiled = check_record("one@7", value)
    assert misfiled.refusal is not None and misfiled.refusal.reason == "bad_key"
    assert "'one@2'" in misfiled.refusal.message and misfiled.parsed is None
    assert misfiled.names_a_version and misfiled.version == 7  # it replaces one@7
    garbage = check_record("one@3", b"\x00junk")
    assert garbage.refusal is not None and garbage.refusal.reason == "not_single_object"
    tombstone = check_record("one@1", None)
    assert tombstone.refusal is None and tombstone.definition is None
    assert tombstone.names_a_version
    nameless = check_record("nonsense", None)
    assert nameless.refusal is not None and nameless.refusal.reason == "bad_key"
    assert not nameless.names_a_version


def test_a_refused_version_is_never_listed_nor_latest_and_replaces_a_valid_one() -> None:
    store = DefinitionStore()
    store.put(DEFINITION)
    store.put(DEFINITION.model_copy(update={"version": 2}))
    cyclic = parse_definition(CYCLIC)
    store.refuse(Refused("one", 2, "dependency cycle", cyclic))
    latest = store.resolve("one")
    assert latest is not None and latest.version == 1
    assert [d.key for d in store.all()] == ["one@1"]
    assert store.resolve("one", 2) is cyclic  # an explicit start is rejected naming it
    store.refuse(Refused("one", 3, "undecodable", None))
    assert store.resolve("one", 3) is None
    assert [r.version for r in store.refused()] == [2, 3]
    store.put(DEFINITION.model_copy(update={"version": 2}))  # a valid record for the key again
    latest = store.resolve("one")
    assert latest is not None and latest.version == 2
    assert [r.version for r in store.refused()] == [3]
    store.remove("one", 3)
    assert store.refused() == []


def test_cached_snapshot_json_equals_the_state_dict() -> None:
    definition = parse_definition(
        {
            "name": "chain",
            "nodes": [
                {"id": "a", "type": "echo"},
                {"id": "b", "type": "echo", "depends_on": ["a"]},
            ],
        }
    )
    command = StartWorkflow(workflow_id="w", name="chain", version=1, definition=definition)
    state = evolve_all(None, decide(None, command, 1))
    assert state is not None
    encoder = SnapshotEncoder()
    assert json.loads(encoder.state_json(state)) == state.to_dict()
    result = StepResult(workflow_id="w", step_key="w/a", attempt=1, output={"x": "é"})
    later = evolve_all(state, decide(state, result, 2))
    assert later is not None
    assert json.loads(encoder.state_json(later)) == later.to_dict()
    decoded = default_contracts().decode_snapshot(encoder.encode(later, 3))
    assert WorkflowState.from_dict(decoded.state) == later


def finished(workflow_id: str, at: int) -> WorkflowState:
    state = started(workflow_id)
    result = StepResult(workflow_id=workflow_id, step_key=f"{workflow_id}/a", attempt=1, output=1)
    done = evolve_all(state, decide(state, result, at))
    assert done is not None and done.status == "completed"
    return done


def test_closed_marker_round_trips_and_rejects_other_bytes() -> None:
    marker = ClosedMarker.of(finished("wé", 5), now=9)
    assert marker == ClosedMarker("wé", "completed", marker.seq, "one", 1, 5)
    assert decode_marker("wé", encode_marker(marker)) == marker
    assert len(encode_marker(marker)) < 100
    for bad in (b"\xc3\x01avro", b"[]", b'{"v":2}', b'{"v":1,"status":"completed"}'):
        with pytest.raises(MarkerError):
            decode_marker("w", bad)
    running = encode_marker(ClosedMarker("w", "running", 1, "one", 1, 5))
    with pytest.raises(MarkerError, match="status"):
        decode_marker("w", running)


def test_duplicate_of_closed_is_the_notice_decide_gives_for_a_known_id() -> None:
    command = StartWorkflow(workflow_id="w1", name="one", version=1)
    assert [duplicate_of_closed(command, 7)] == decide(finished("w1", 5), command, 7)


def test_closed_ids_are_per_partition_and_expire_after_the_window() -> None:
    ids = ClosedIds(window_ms=800, buckets=8)  # buckets of 100 ms
    ids.add(0, "old", 50)
    ids.add(0, "new", 750)
    ids.add(1, "other", 50)
    assert ids.contains(0, "old") and ids.contains(0, "new") and not ids.contains(0, "other")
    assert ids.expire(now=899) == 0  # "old" finished 849 ms ago, but its bucket ends at 100
    assert ids.expire(now=900) == 2 and len(ids) == 1
    assert not ids.contains(0, "old") and ids.contains(0, "new")
    ids.drop_partitions([0])
    assert len(ids) == 0


def test_table_keeps_closed_ids_after_the_finished_states_are_evicted() -> None:
    table = WorkflowTable(finished_capacity=1)
    for workflow_id in ("w1", "w2"):
        table.stage(finished(workflow_id, 5), partition=1)
        table.commit()
    assert table.get("w1") is None and table.get("w2") is not None
    assert table.is_closed(1, "w1") and table.is_closed(1, "w2")
    assert not table.is_closed(0, "w1")
    table.load_closed(0, [ClosedMarker("w9", "failed", 3, "one", 1, 5)])
    assert table.is_closed(0, "w9")
    table.drop_partitions({1})
    assert not table.is_closed(1, "w1") and table.is_closed(0, "w9")


def test_timer_heap_takes_a_moved_deadline_under_the_same_id() -> None:
    heap = TimerHeap()
    heap.schedule("w1", [("heartbeat:w1/a#1", 100)])
    heap.schedule("w1", [("heartbeat:w1/a#1", 250)])  # a heartbeat moved the deadline
    assert heap.pop_due(150, 10) == [("w1", "heartbeat:w1/a#1", 100)]  # stale for decide
    assert heap.pop_due(300, 10) == [("w1", "heartbeat:w1/a#1", 250)]


class _Keys:
    """A key directory holding one key (the orchestrator's is the principals topic)."""

    def __init__(self, key: PrincipalKey) -> None:
        self.key = key

    def get(self, key_id: str) -> PrincipalKey | None:
        return self.key if key_id == self.key.key_id else None

    def is_revoked(self, key_id: str) -> bool:
        return False

    def refresh(self, key_id: str = "") -> None:
        return None


def test_a_heartbeat_timeout_fires_after_the_heartbeat_moved_it() -> None:
    """Heartbeat, then silence: the moved deadline still times the step out."""
    definition = parse_definition(
        {
            "name": "beat",
            "nodes": [
                {
                    "id": "a",
                    "type": "work",
                    "heartbeat_timeout_ms": 100,
                    "retry": {"max_attempts": 1},
                }
            ],
        }
    )
    clock = [1_000]
    signer = Signer("0123456789ab", b"k" * 32)
    key = PrincipalKey(signer.key_id, "test", "default", frozenset({"write"}), signer.key)
    handler = OrchestratorHandler(
        topic_names("t"),
        lambda name, version: definition,
        lambda parts: {},
        lambda: clock[0],
        authenticator=Authenticator(_Keys(key), require_signatures=True),
    )

    def deliver(body: Input) -> list[str]:
        envelope = Envelope(
            "e",
            type(body).__name__,
            body.workflow_id,
            None,
            clock[0],
            None,
            None,
            None,
            None,
            None,
            1,
            body,
        )
        headers = signer.headers(body.workflow_id, b"")
        message = BusMessage("t.commands", 0, 0, body.workflow_id, b"", envelope, headers)
        out = list(handler.handle(message))
        out += handler.tick(clock[0])
        out += handler.end_batch()
        handler.committed()
        return [r.topic for r in out]

    deliver(StartWorkflow(workflow_id="w", name="beat", version=0))
    clock[0] = 1_050
    deliver(StepHeartbeat(workflow_id="w", step_key="w/a", attempt=1))  # deadline 1_100 -> 1_150
    clock[0] = 1_120  # the first deadline: stale, nothing happens
    assert handler.tick(clock[0]) == []
    clock[0] = 1_200
    fired = handler.tick(clock[0])
    types = [
        default_contracts().decode_envelope(r.value).type for r in fired if r.topic == "t.events"
    ]
    assert "StepTimedOut" in types and "WorkflowFailed" in types
