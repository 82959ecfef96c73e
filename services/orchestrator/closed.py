"""Closed markers: durable "this workflow id finished" records (``{prefix}.closed``, ADR 0032).

The orchestrator writes one marker per finished workflow in the transaction that
tombstones its snapshot, and loads the markers of a partition on assignment, so a
repeated StartWorkflow is answered with ``DuplicateStartIgnored`` after a restart or
rebalance for as long as the dedup window (the topic's ``retention.ms``).

Encoding (value; the key is the workflow id, UTF-8): compact JSON, version 1::

    {"v":1,"status":"completed","seq":7,"name":"order","version":3,"finished_at":1700000000000}

No Avro schema: the record is internal to the orchestrator and tiny; ``v`` allows a change.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from kflow.bus.reader import read_latest
from kflow.core.errors import KflowError
from kflow.core.events import DuplicateStartIgnored
from kflow.core.inputs import StartWorkflow
from kflow.core.machine import duplicate_start_ignored
from kflow.core.state import TERMINAL_WORKFLOW, WorkflowState

log = logging.getLogger(__name__)

MARKER_VERSION = 1
DEFAULT_BUCKETS = 8


class MarkerError(KflowError, ValueError):
    """Bytes that are not a closed marker."""


@dataclass(frozen=True, slots=True)
class ClosedMarker:
    """What is kept of a finished workflow: enough to answer a duplicate start."""

    workflow_id: str
    status: str
    """completed, failed or cancelled."""
    seq: int
    """seq of the terminal event."""
    name: str
    version: int
    finished_at: int

    @classmethod
    def of(cls, state: WorkflowState, now: int) -> ClosedMarker:
        """The marker of a terminal ``state`` (``now`` if it has no finish time)."""
        return cls(
            state.workflow_id,
            state.status,
            state.seq,
            state.name,
            state.version,
            state.finished_at if state.finished_at is not None else now,
        )


def encode_marker(marker: ClosedMarker) -> bytes:
    """Value bytes of ``marker`` (its workflow id is the record key)."""
    return json.dumps(
        {
            "v": MARKER_VERSION,
            "status": marker.status,
            "seq": marker.seq,
            "name": marker.name,
            "version": marker.version,
            "finished_at": marker.finished_at,
        },
        separators=(",", ":"),
        ensure_ascii=False,
    ).encode()


def decode_marker(workflow_id: str, data: bytes) -> ClosedMarker:
    """The marker in ``data``; raises :class:`MarkerError` for anything else."""
    try:
        doc = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise MarkerError(f"closed marker of {workflow_id!r} is not JSON: {e}") from e
    if not isinstance(doc, dict) or doc.get("v") != MARKER_VERSION:
        raise MarkerError(f"closed marker of {workflow_id!r} has no known version: {doc!r:.80}")
    try:
        marker = ClosedMarker(
            workflow_id,
            str(doc["status"]),
            int(doc["seq"]),
            str(doc["name"]),
            int(doc["version"]),
            int(doc["finished_at"]),
        )
    except (KeyError, TypeError, ValueError) as e:
        raise MarkerError(f"closed marker of {workflow_id!r} lacks a field: {e!r}") from e
    if marker.status not in TERMINAL_WORKFLOW:
        raise MarkerError(f"closed marker of {workflow_id!r} has status {marker.status!r}")
    return marker


def duplicate_of_closed(
    command: StartWorkflow, now: int, idempotency_key: str | None = None
) -> DuplicateStartIgnored:
    """The answer to a StartWorkflow for a closed id: what ``decide`` gives for a known one."""
    return duplicate_start_ignored(command, now, idempotency_key)


class ClosedIds:
    """Ids of workflows that finished within the dedup window, per partition.

    Only ids are kept (the answer needs no more). They sit in time buckets of
    ``window_ms / buckets`` by finish time, so expiry drops whole sets: an id is
    remembered for at least ``window_ms`` and at most one bucket longer.
    """

    def __init__(self, window_ms: int, buckets: int = DEFAULT_BUCKETS) -> None:
        if window_ms < 1 or buckets < 1:
            raise ValueError(f"window_ms and buckets must be >= 1, got {window_ms}, {buckets}")
        self.window_ms = window_ms
        self._span = max(1, window_ms // buckets)
        self._parts: dict[int, dict[int, set[str]]] = {}

    def add(self, partition: int, workflow_id: str, finished_at: int) -> None:
        """Remember ``workflow_id`` as finished at ``finished_at`` (ms)."""
        buckets = self._parts.setdefault(partition, {})
        buckets.setdefault(finished_at // self._span, set()).add(workflow_id)

    def contains(self, partition: int, workflow_id: str) -> bool:
        """Whether ``workflow_id`` of ``partition`` finished within the window."""
        return any(workflow_id in ids for ids in self._parts.get(partition, {}).values())

    def expire(self, now: int) -> int:
        """Forget buckets that ended over ``window_ms`` ago; returns how many ids went."""
        oldest_kept = (now - self.window_ms) // self._span
        gone = 0
        for buckets in self._parts.values():
            for bucket in [b for b in buckets if b < oldest_kept]:
                gone += len(buckets.pop(bucket))
        return gone

    def drop_partitions(self, partitions: Iterable[int]) -> None:
        """Forget the ids of revoked partitions (the next owner loads them)."""
        for partition in partitions:
            self._parts.pop(partition, None)

    def __len__(self) -> int:
        return sum(len(ids) for buckets in self._parts.values() for ids in buckets.values())


def restore_closed(
    bootstrap: str, topic: str, partitions: Sequence[int], timeout_s: float = 60.0
) -> dict[int, list[ClosedMarker]]:
    """The closed markers of each partition (read_committed, to the end)."""
    found: dict[int, list[ClosedMarker]] = {p: [] for p in partitions}
    for partition, latest in read_latest(bootstrap, topic, partitions, timeout_s).items():
        for workflow_id, value in latest.items():
            if value is None:
                continue
            try:
                found[partition].append(decode_marker(workflow_id, value))
            except MarkerError as e:
                log.error("%s; the marker is skipped", e)
    return found
