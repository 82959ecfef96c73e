"""Workflow states owned by this orchestrator: committed, plus changes staged in the open batch."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable

from kflow.bus.topics import DEFAULT_CLOSED_RETENTION_MS
from kflow.core.machine import RETRYABLE_WORKFLOW
from kflow.core.state import WorkflowState, is_terminal
from kflow.orchestrator.closed import ClosedIds, ClosedMarker
from kflow.orchestrator.retained import DEFAULT_RETRY_WINDOW_MS, RetainedIds

_MISSING = object()


class WorkflowTable:
    """Committed state per workflow id, a staging area for the current transaction, the
    last ``finished_capacity`` finished states, and the ids of every workflow finished
    within the dedup window (``closed``, loaded from ``{prefix}.closed``; ADR 0032), and
    the ids of finished workflows whose snapshot is retained for retries (``retained``,
    ADR 0082).

    ``stage`` changes nothing committed; ``commit`` applies the staged states,
    ``discard`` drops them (the transaction was aborted).
    """

    def __init__(
        self,
        finished_capacity: int = 10_000,
        closed_window_ms: int = DEFAULT_CLOSED_RETENTION_MS,
        retry_window_ms: int = DEFAULT_RETRY_WINDOW_MS,
    ) -> None:
        self._states: dict[str, WorkflowState] = {}
        self._partition: dict[str, int] = {}
        self._staged: dict[str, tuple[WorkflowState, int]] = {}
        self._finished: OrderedDict[str, WorkflowState] = OrderedDict()
        self._finished_capacity = finished_capacity
        self.closed = ClosedIds(closed_window_ms)
        self.retained = RetainedIds(retry_window_ms)

    def get(self, workflow_id: str) -> WorkflowState | None:
        """The current state (staged first), including recently finished workflows."""
        staged = self._staged.get(workflow_id)
        if staged is not None:
            return staged[0]
        return self._states.get(workflow_id) or self._finished.get(workflow_id)

    def is_closed(self, partition: int, workflow_id: str) -> bool:
        """Whether ``workflow_id`` finished within the dedup window (state may be gone)."""
        return self.closed.contains(partition, workflow_id)

    def partition_of(self, workflow_id: str) -> int | None:
        """The partition a workflow's records live in, if this orchestrator owns it."""
        staged = self._staged.get(workflow_id)
        return staged[1] if staged is not None else self._partition.get(workflow_id)

    def stage(self, state: WorkflowState, partition: int) -> None:
        """Record a new state for the open transaction."""
        self._staged[state.workflow_id] = (state, partition)

    def staged(self) -> list[WorkflowState]:
        """States changed in the open transaction."""
        return [state for state, _ in self._staged.values()]

    def commit(self) -> list[WorkflowState]:
        """Make the staged states current; returns them."""
        changed = []
        for workflow_id, (state, partition) in self._staged.items():
            changed.append(state)
            if is_terminal(state):
                self._states.pop(workflow_id, None)
                self._partition.pop(workflow_id, None)
                self._remember_finished(state)
                finished_at = state.finished_at or state.started_at
                self.closed.add(partition, workflow_id, finished_at)
                if self.retained.window_ms and state.status in RETRYABLE_WORKFLOW:
                    self.retained.add(partition, workflow_id, finished_at)
            else:
                self._states[workflow_id] = state
                self._partition[workflow_id] = partition
                self.retained.discard(workflow_id)
        self._staged.clear()
        return changed

    def discard(self) -> None:
        """Drop the staged states."""
        self._staged.clear()

    def load(self, partition: int, states: Iterable[WorkflowState]) -> None:
        """Add restored states of one partition (finished ones are retained for retries)."""
        for state in states:
            if is_terminal(state):
                self._remember_finished(state)
                finished_at = state.finished_at or state.started_at
                self.retained.add(partition, state.workflow_id, finished_at)
                continue
            self._states[state.workflow_id] = state
            self._partition[state.workflow_id] = partition

    def forget_finished(self, workflow_id: str) -> None:
        """Drop a finished state kept in memory (its retry window passed)."""
        self._finished.pop(workflow_id, None)

    def remember_finished(self, state: WorkflowState) -> None:
        """Keep a finished state read back for a retry."""
        self._remember_finished(state)

    def load_closed(self, partition: int, markers: Iterable[ClosedMarker]) -> None:
        """Add the restored closed markers of one partition."""
        for marker in markers:
            self.closed.add(partition, marker.workflow_id, marker.finished_at)

    def drop_partitions(self, partitions: set[int]) -> set[str]:
        """Forget every workflow of ``partitions``; returns their ids."""
        dropped = {w for w, p in self._partition.items() if p in partitions}
        for workflow_id in dropped:
            self._states.pop(workflow_id, None)
            self._partition.pop(workflow_id, None)
        self._finished.clear()  # cheap and safe: a new owner may have finished them meanwhile
        self.closed.drop_partitions(partitions)
        self.retained.drop_partitions(partitions)
        return dropped

    def active(self) -> list[WorkflowState]:
        """Every committed, unfinished workflow."""
        return list(self._states.values())

    def __len__(self) -> int:
        return len(self._states)

    def _remember_finished(self, state: WorkflowState) -> None:
        self._finished[state.workflow_id] = state
        self._finished.move_to_end(state.workflow_id)
        while len(self._finished) > self._finished_capacity:
            self._finished.popitem(last=False)
