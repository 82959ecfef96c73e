"""Snapshots of finished workflows kept for ``RetryWorkflow`` during the retry window (ADR 0082).

A finished workflow's last snapshot stays in ``{prefix}.snapshots`` (instead of a tombstone)
for ``retry_window_ms`` after it finished; the orchestrator keeps only the ids and finish
times here and writes the tombstone once the window has passed. The states themselves are
read back from the snapshot partition when a retry arrives for one not in memory.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable

DEFAULT_RETRY_WINDOW_MS = 86_400_000
"""One day: a failed or cancelled run can be retried this long after it finished."""


class RetainedIds:
    """Finished workflows whose snapshot is retained, per partition, oldest first."""

    def __init__(self, window_ms: int) -> None:
        if window_ms < 0:
            raise ValueError(f"retry window must be >= 0 ms, got {window_ms}")
        self.window_ms = window_ms
        self._finished: dict[str, tuple[int, int]] = {}
        """workflow id -> (partition, finished_at)."""
        self._heap: list[tuple[int, str]] = []

    def add(self, partition: int, workflow_id: str, finished_at: int) -> None:
        """Remember a retained snapshot (a later finish of the same id replaces it)."""
        self._finished[workflow_id] = (partition, finished_at)
        heapq.heappush(self._heap, (finished_at, workflow_id))

    def discard(self, workflow_id: str) -> None:
        """The workflow runs again (retried): its snapshot is live, not retained."""
        self._finished.pop(workflow_id, None)

    def contains(self, partition: int, workflow_id: str, now: int | None = None) -> bool:
        """Whether the snapshot of ``workflow_id`` in ``partition`` is retained (and, given
        ``now``, its window has not passed yet: expiry runs on ticks, a retry may come first)."""
        found = self._finished.get(workflow_id)
        if found is None or found[0] != partition:
            return False
        return now is None or found[1] >= now - self.window_ms

    def expire(self, now: int) -> list[str]:
        """Ids whose window has passed (their tombstones are due); forgotten here."""
        due: list[str] = []
        limit = now - self.window_ms
        while self._heap and self._heap[0][0] < limit:
            finished_at, workflow_id = heapq.heappop(self._heap)
            found = self._finished.get(workflow_id)
            if found is not None and found[1] == finished_at:
                del self._finished[workflow_id]
                due.append(workflow_id)
        return due

    def drop_partitions(self, partitions: Iterable[int]) -> None:
        """Forget revoked partitions (their next owner restores them)."""
        gone = set(partitions)
        for workflow_id in [w for w, (p, _) in self._finished.items() if p in gone]:
            del self._finished[workflow_id]

    def __len__(self) -> int:
        return len(self._finished)
