"""Restore workflow state from the compacted snapshots topic, consistently with committed offsets.

Snapshots are written in the same transaction as the input offsets, so reading
a partition ``read_committed`` to its end gives exactly the state that the
committed offsets describe.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field

from kflow.bus.contracts import default_contracts
from kflow.bus.errors import DecodeError
from kflow.bus.message import TRACE_HEADER
from kflow.bus.reader import read_latest_records
from kflow.bus.records import WorkflowSnapshot
from kflow.core.jsondoc import dumps
from kflow.core.state import StepRecord, WorkflowState

log = logging.getLogger(__name__)

SNAPSHOT_SCHEMA = "kflow.WorkflowSnapshot"


def snapshot_of(state: WorkflowState, taken_at: int) -> bytes:
    """Encoded snapshot record of ``state`` (plain path, no caching)."""
    return default_contracts().encode_snapshot(
        WorkflowSnapshot(
            workflow_id=state.workflow_id, seq=state.seq, state=state.to_dict(), taken_at=taken_at
        )
    )


@dataclass
class _Rendered:
    graph: object
    definition: str
    steps: dict[str, tuple[StepRecord, str]] = field(default_factory=dict)


class SnapshotEncoder:
    """Encodes snapshots, reusing the JSON text of the parts that did not change.

    A snapshot is the whole state, written every batch the workflow changes; for a
    large workflow re-rendering the definition and every step record each time made
    snapshots O(steps) per step. Step records are immutable and replaced when they
    change, so their text is cached by identity. The output is the same JSON document
    as ``WorkflowState.to_dict()`` (checked in tests/runtime/test_orchestrator_parts.py).
    """

    def __init__(self) -> None:
        self._cache: dict[str, _Rendered] = {}
        self._codec = default_contracts().codec

    def state_json(self, state: WorkflowState) -> str:
        """JSON text equal (as a document) to ``state.to_dict()``."""
        cached = self._cache.get(state.workflow_id)
        if cached is None or cached.graph is not state.graph:
            cached = _Rendered(state.graph, dumps(state.definition_dict))
            self._cache[state.workflow_id] = cached
        steps: list[str] = []
        for key in sorted(state.steps):
            record = state.steps[key]
            hit = cached.steps.get(key)
            if hit is None or hit[0] is not record:
                hit = (record, dumps(record.to_dict()))
                cached.steps[key] = hit
            steps.append(hit[1])
        head = dumps(
            {
                "type": "WorkflowState",
                "workflow_id": state.workflow_id,
                "name": state.name,
                "version": state.version,
                "input": state.input,
                "seed": state.seed,
                "tenant": state.tenant,
                "actor": state.actor,
                "status": state.status,
                "seq": state.seq,
                "started_at": state.started_at,
                "finished_at": state.finished_at,
                "waiting_deps": {k: state.waiting_deps[k] for k in sorted(state.waiting_deps)},
                "ready": sorted(state.ready),
                "reviews": sorted(state.reviews),
                "unresolved": state.unresolved,
                "output": state.output,
                "reason": state.reason,
                "command_keys": [list(entry) for entry in state.command_keys],
            }
        )
        return f'{head[:-1]},"definition":{cached.definition},"steps":[{",".join(steps)}]}}'

    def encode(self, state: WorkflowState, taken_at: int) -> bytes:
        """Encoded snapshot record of ``state``."""
        return self._codec.encode(
            SNAPSHOT_SCHEMA,
            {
                "workflow_id": state.workflow_id,
                "seq": state.seq,
                "state": self.state_json(state),
                "taken_at": taken_at,
            },
        )

    def forget(self, workflow_ids: Iterable[str]) -> None:
        """Drop cached text of finished or revoked workflows."""
        for workflow_id in workflow_ids:
            self._cache.pop(workflow_id, None)


def restore_partitions(
    bootstrap: str,
    topic: str,
    partitions: Iterable[int],
    timeout_s: float = 60.0,
    traces: dict[str, str] | None = None,
) -> dict[int, dict[str, WorkflowState]]:
    """Latest state per workflow in each snapshots partition (tombstoned ones left out).

    ``traces`` gets the ``traceparent`` header of each restored snapshot (the workflow's
    last decision, while tracing was on). Raises ``ReaderError`` when a partition cannot be
    read to its end in ``timeout_s``.
    """
    found: dict[int, dict[str, WorkflowState]] = {}
    for partition, latest in read_latest_records(bootstrap, topic, partitions, timeout_s).items():
        found[partition] = {}
        for workflow_id, record in latest.items():
            value = record.value
            if value is None:
                continue
            traceparent = record.headers.get(TRACE_HEADER)
            if traces is not None and traceparent is not None:
                traces[workflow_id] = traceparent.decode("ascii", "replace")
            try:
                snapshot = default_contracts().decode_snapshot(value)
                found[partition][workflow_id] = WorkflowState.from_dict(snapshot.state)
            except (DecodeError, ValueError, KeyError) as e:
                log.error(
                    "snapshot of %s is unreadable (%s); the workflow is skipped", workflow_id, e
                )
    return found
