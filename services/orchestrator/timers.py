"""A heap of due timers, rebuilt from workflow state (the state is the truth, the heap an index)."""

from __future__ import annotations

import heapq
from collections.abc import Iterable


class TimerHeap:
    """``(due_at, workflow_id, timer_id)`` entries; stale ones are skipped by the caller.

    Entries are never removed eagerly: when a workflow changes, its current timers
    are pushed again, and a popped entry that its workflow no longer lists is
    ignored. ``known`` avoids pushing the same timer twice; it includes the due time,
    because a timer can move (a heartbeat pushes its deadline out under the same id)
    and the moved one must be pushed even while the old entry is still queued.
    """

    def __init__(self) -> None:
        self._heap: list[tuple[int, str, str]] = []
        self._known: set[tuple[str, str, int]] = set()

    def schedule(self, workflow_id: str, timers: Iterable[tuple[str, int]]) -> None:
        """Add ``(timer_id, due_at)`` pairs of one workflow (already known ones are ignored)."""
        for timer_id, due_at in timers:
            if (workflow_id, timer_id, due_at) not in self._known:
                self._known.add((workflow_id, timer_id, due_at))
                heapq.heappush(self._heap, (due_at, workflow_id, timer_id))

    def pop_due(self, now_ms: int, limit: int) -> list[tuple[str, str, int]]:
        """Up to ``limit`` due ``(workflow_id, timer_id, due_at)``, earliest first."""
        due: list[tuple[str, str, int]] = []
        while self._heap and self._heap[0][0] <= now_ms and len(due) < limit:
            due_at, workflow_id, timer_id = heapq.heappop(self._heap)
            self._known.discard((workflow_id, timer_id, due_at))
            due.append((workflow_id, timer_id, due_at))
        return due

    def next_due(self) -> int | None:
        """When the earliest timer is due, or None."""
        return self._heap[0][0] if self._heap else None

    def drop_workflows(self, workflow_ids: set[str]) -> None:
        """Forget every timer of ``workflow_ids`` (their partition was revoked)."""
        if not workflow_ids:
            return
        self._heap = [e for e in self._heap if e[1] not in workflow_ids]
        heapq.heapify(self._heap)
        self._known = {k for k in self._known if k[0] not in workflow_ids}

    def __len__(self) -> int:
        return len(self._heap)
