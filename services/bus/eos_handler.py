"""What the owner of an :class:`~kflow.bus.eos.EosLoop` implements and configures."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Generic, NamedTuple, TypeVar

from kflow.bus.clients import ConfigValue
from kflow.bus.message import BusMessage, OutRecord

T = TypeVar("T")


class PartitionId(NamedTuple):
    """One topic partition, without confluent-kafka types."""

    topic: str
    partition: int


class Handler(Generic[T]):
    """What the owner of an :class:`EosLoop` implements; every hook but ``handle`` is optional.

    Contract: ``handle`` must leave the owner's state unchanged when it raises.
    State changed by ``handle``/``tick`` is provisional until ``committed()``;
    ``rolled_back()`` means those changes must be dropped (or reloaded).
    """

    def handle(self, message: BusMessage[T]) -> Sequence[OutRecord]:
        """Outputs for one record. Raise ``RetryableError`` to retry the batch; any other
        exception sends the record to the DLQ."""
        raise NotImplementedError

    def refused(self, message: BusMessage[T], reason: str, detail: str) -> Sequence[OutRecord]:
        """The loop sent ``message`` to the DLQ unhandled, because handling it made an
        output over the record limit (``reason``, ``detail`` says which): small records
        that answer it (e.g. a notice). Must not change state; errors are ignored."""
        return ()

    def tick(self, now_ms: int) -> Sequence[OutRecord]:
        """Timer-driven outputs, called once per iteration; they join the transaction."""
        return ()

    def end_batch(self) -> Sequence[OutRecord]:
        """Outputs that summarise the batch (e.g. changed snapshots), produced last."""
        return ()

    def committed(self) -> None:
        """The transaction committed: provisional state is now durable."""

    def rolled_back(self, partitions: Sequence[PartitionId]) -> None:
        """The transaction was aborted: drop state changes since the last commit."""

    def on_assign(self, partitions: Sequence[PartitionId]) -> None:
        """Partitions were assigned: restore their state (called outside any transaction)."""

    def on_revoke(self, partitions: Sequence[PartitionId]) -> None:
        """Partitions were revoked or lost: drop their state."""

    def reload(self, partitions: Sequence[PartitionId]) -> None:
        """The last commit's outcome is unknown (the broker may have committed it): read the
        state of ``partitions`` back from the log, which holds whichever outcome it was.
        Called after ``rolled_back``, outside any transaction. Default: ``on_revoke`` then
        ``on_assign``, as when another instance hands the partitions over (ADR 0008)."""
        self.on_revoke(partitions)
        self.on_assign(partitions)


@dataclass(frozen=True)
class EosConfig:
    """Settings of one loop instance."""

    bootstrap: str
    group_id: str
    instance_id: str
    """Stable per deployment slot (e.g. ``orchestrator-0``): the transactional.id is
    ``{group_id}.{instance_id}``, so a restarted process fences its dead predecessor
    and aborts its open transaction at once."""
    topics: tuple[str, ...]
    dlq_topic: str
    batch_size: int = 500
    """Most records per transaction."""
    max_batch_ms: int = 100
    """Longest wait to fill a batch; bounds the latency added by batching."""
    kafka_timeout_s: float = 10.0
    """Limit for each commit, abort, offset send and init call."""
    static_membership: bool = True
    """Use ``group.instance.id`` = instance id: a restart keeps its partitions without a
    rebalance (a dead instance's partitions move after ``session.timeout.ms``)."""
    producer_overrides: dict[str, ConfigValue] = field(default_factory=dict)
    consumer_overrides: dict[str, ConfigValue] = field(default_factory=dict)
    component: str = ""
    """``component`` label of the records-in/out and DLQ metrics; empty = no metrics."""

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        if self.max_batch_ms < 1:
            raise ValueError(f"max_batch_ms must be >= 1, got {self.max_batch_ms}")
        if not self.topics:
            raise ValueError("topics must name at least one topic to consume")

    @property
    def transactional_id(self) -> str:
        return f"{self.group_id}.{self.instance_id}"


@dataclass
class LoopStats:
    """Counters since the loop started."""

    records_in: int = 0
    records_out: int = 0
    dead_letters: int = 0
    commits: int = 0
    aborts: int = 0
    producer_restarts: int = 0
    reloads: int = 0
    """Times the owner's state was read back from the log after a commit of unknown outcome."""
    isolated: int = 0
    """Records sent to the DLQ because their outputs (or batches) could not be produced."""


def system_clock_ms() -> int:
    """Wall-clock milliseconds since the Unix epoch."""
    return time.time_ns() // 1_000_000
