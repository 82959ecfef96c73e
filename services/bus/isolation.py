"""Find the one input that makes a batch fail, so the exactly-once loop can move on (ADR 0027).

Pure bookkeeping (no Kafka): :class:`~kflow.bus.eos.EosLoop` reports each failed batch
whose cause lies in the records (an output too large, a record the broker refuses);
a batch that fails twice is split in half, down to one record, and that record is
blamed: its next delivery goes to the DLQ with the reason instead of to the handler.
An input whose own output is too large is blamed at once. Failures of the servers
(timeouts, a broker restart) are not reported here: they are retried, never blamed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import NamedTuple

from kflow.bus.eos_handler import PartitionId

FAILURES_BEFORE_SPLIT = 2
"""A batch failing this many times in a row is split (a single record: blamed)."""
OUTPUT_TOO_LARGE = "output_too_large"
"""DLQ ``reason``: handling the record made an output over the record limit."""
BATCH_FAILED = "batch_failed"
"""DLQ ``reason``: every batch holding just this record failed, with the error recorded."""


class Coordinates(NamedTuple):
    """Where a consumed record sits."""

    topic: str
    partition: int
    offset: int


@dataclass(frozen=True, slots=True)
class Fault:
    """Why a record is sent to the DLQ instead of its handler."""

    reason: str
    error_type: str
    message: str


class BatchIsolation:
    """Batch size limit and blamed records of one loop; see the module docstring."""

    def __init__(self, batch_size: int) -> None:
        self.batch_size = batch_size
        self.limit = batch_size
        """Most records the next batch may hold."""
        self.splits = 0
        """Times a failing batch was split (for stats and tests)."""
        self._failures = 0
        self._blamed: dict[Coordinates, Fault] = {}
        # End offsets of the batch that started the search: until they are committed,
        # batches stay small.
        self._suspect: dict[PartitionId, int] = {}

    @property
    def blaming(self) -> bool:
        """Whether any record is blamed (the loop skips the lookup otherwise)."""
        return bool(self._blamed)

    def fault_of(self, where: Coordinates) -> Fault | None:
        """The fault a record was blamed for, or None (hand it to the handler)."""
        return self._blamed.get(where)

    def blame(self, where: Coordinates, fault: Fault) -> None:
        """Send this record to the DLQ on its next delivery."""
        self._blamed[where] = fault
        self._failures = 0

    def batch_failed(self, batch: Sequence[Coordinates], error: Exception) -> None:
        """A batch holding ``batch`` failed because of some record in it."""
        if not batch:
            return
        for where in batch:
            part = PartitionId(where.topic, where.partition)
            self._suspect.setdefault(part, where.offset + 1)
            self._suspect[part] = max(self._suspect[part], where.offset + 1)
        self._failures += 1
        if self._failures < FAILURES_BEFORE_SPLIT:
            return
        self._failures = 0
        if len(batch) == 1:
            text = str(error) or type(error).__name__
            self.blame(batch[0], Fault(BATCH_FAILED, type(error).__name__, text[:1000]))
        else:
            self.splits += 1
            self.limit = max(1, len(batch) // 2)

    def committed(self, offsets: Mapping[PartitionId, int]) -> None:
        """Offsets were committed: forget what they passed; end the search once past it."""
        self._failures = 0
        for where in [w for w in self._blamed if w.offset < offsets.get(_part(w), -1)]:
            del self._blamed[where]
        for part, end in list(self._suspect.items()):
            if offsets.get(part, -1) >= end:
                del self._suspect[part]
        if not self._suspect:
            self.limit = self.batch_size

    def forget(self, partitions: Sequence[PartitionId]) -> None:
        """Partitions were revoked: their records are another instance's business now."""
        gone = set(partitions)
        self._blamed = {w: f for w, f in self._blamed.items() if _part(w) not in gone}
        for part in gone:
            self._suspect.pop(part, None)
        if not self._suspect:
            self.limit = self.batch_size


def _part(where: Coordinates) -> PartitionId:
    return PartitionId(where.topic, where.partition)
