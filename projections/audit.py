"""Audit one workflow from the log itself: its events, its state at any point, and ``verify``."""

from __future__ import annotations

import time
import zlib
from collections.abc import Sequence
from dataclasses import dataclass

from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

from kflow.bus.clients import make_consumer
from kflow.bus.contracts import Contracts, default_contracts
from kflow.bus.topics import TopicNames
from kflow.core.events import is_notice
from kflow.core.fold import evolve_all
from kflow.core.replay import Divergence, verify
from kflow.core.state import WorkflowState
from kflow.projections.decoding import decode_message
from kflow.projections.log_event import LogEvent


@dataclass(frozen=True)
class AuditResult:
    """One workflow's log, its state at the requested point and the verification outcome."""

    events: list[LogEvent]
    state: WorkflowState | None
    divergence: Divergence | None
    fold_error: str | None


def read_workflow_events(
    bootstrap: str, topics: TopicNames, workflow_id: str, timeout_s: float = 30.0
) -> list[LogEvent]:
    """Every event of ``workflow_id`` in log order (read_committed, from offset 0)."""
    consumer = make_consumer(bootstrap, f"{topics.prefix}.audit")
    contracts = default_contracts()
    try:
        meta = consumer.list_topics(topics.events, timeout=10).topics[topics.events]
        count = len(meta.partitions)
        if count == 0:
            return []
        # librdkafka's default partitioner puts a key on crc32(key) % partitions
        likely = zlib.crc32(workflow_id.encode()) % count
        found = _scan(consumer, contracts, topics, [likely], workflow_id, timeout_s)
        if not found:
            others = [p for p in range(count) if p != likely]
            found = _scan(consumer, contracts, topics, others, workflow_id, timeout_s)
        return found
    finally:
        consumer.close()


def _scan(
    consumer: Consumer,
    contracts: Contracts,
    topics: TopicNames,
    partitions: Sequence[int],
    workflow_id: str,
    timeout_s: float,
) -> list[LogEvent]:
    ends = {}
    for p in partitions:
        _, high = consumer.get_watermark_offsets(TopicPartition(topics.events, p), timeout=10)
        if high > 0:
            ends[p] = high
    if not ends:
        return []
    consumer.assign([TopicPartition(topics.events, p, OFFSET_BEGINNING) for p in ends])
    key = workflow_id.encode()
    out: list[LogEvent] = []
    done: set[int] = set()
    deadline = time.monotonic() + timeout_s
    while len(done) < len(ends) and time.monotonic() < deadline:
        for msg in consumer.consume(2_000, 0.5):
            if msg.error() is not None:
                continue
            p = int(msg.partition() or 0)
            if msg.key() == key:
                decoded = decode_message(msg, contracts, topics)
                if isinstance(decoded, LogEvent):
                    out.append(decoded)
            if int(msg.offset() or 0) + 1 >= ends[p]:
                done.add(p)
        for tp in consumer.position([TopicPartition(topics.events, p) for p in ends]):
            if tp.offset >= ends[tp.partition]:
                done.add(tp.partition)
    consumer.unassign()
    return out


def within(le: LogEvent, at_seq: int | None, at_time_ms: int | None) -> bool:
    """True if ``le`` is at or before the requested seq and time."""
    return (at_seq is None or le.seq <= at_seq) and (
        at_time_ms is None or le.event.at <= at_time_ms
    )


def audit(
    events: Sequence[LogEvent], at_seq: int | None = None, at_time_ms: int | None = None
) -> AuditResult:
    """Re-fold the events up to ``at_seq``/``at_time_ms`` and verify the whole log."""
    chosen = [le for le in events if within(le, at_seq, at_time_ms)]
    state: WorkflowState | None = None
    fold_error = None
    try:
        state = evolve_all(None, [le.event for le in chosen if not is_notice(le.event)])
    except ValueError as e:
        fold_error = str(e)
    divergence = None
    if events:
        try:
            divergence = verify([le.event for le in events])
        except ValueError as e:  # re-deciding could not even run: the log is corrupt there
            fold_error = fold_error or f"verify: {e}"
    return AuditResult(list(events), state, divergence, fold_error)
