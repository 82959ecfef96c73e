"""The orchestrator's in-memory parts: timer heap, staged workflow table, definitions store."""

from __future__ import annotations

import json

from services.bus.contracts import default_contracts
from services.core.definition import parse_definition
from services.core.inputs import StartWorkflow, StepResult
from services.core.machine import decide, evolve_all
from services.core.state import WorkflowState
from services.orchestrator.snapshots import SnapshotEncoder
from services.orchestrator.table import WorkflowTable
from services.orchestrator.timers import TimerHeap
from services.registry.store import DefinitionStore

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
