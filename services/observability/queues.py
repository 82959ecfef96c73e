"""Task queues and the processors serving them (ADR 0017).

A step goes to ``{prefix}.tasks.<queue>`` (the node's ``queue``, else its type). If no
processor consumes that queue, the step waits for ever; this module makes that visible:
for each tasks topic, how many tasks the queue's processor group has not consumed yet and
how many members the group has now. Tasks waiting with no member is "no processor serves
queue X" (``kflow status``, ``kflow_queue_unserved``).
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass

from confluent_kafka import (
    ConsumerGroupTopicPartitions,
    IsolationLevel,
    KafkaException,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient, OffsetSpec  # type: ignore[attr-defined]

from kflow.bus.clients import make_admin
from kflow.bus.reader import ReaderError, TopicReader
from kflow.bus.topics import topic_names
from kflow.observability.lag import LagUnavailable, with_records
from kflow.observability.metrics import QUEUE_PROCESSORS, QUEUE_UNSERVED, QUEUE_WAITING

log = logging.getLogger(__name__)

COUNT_LIMIT = 10_000
"""Up to this many offsets behind, waiting tasks are counted one by one."""


@dataclass(frozen=True, slots=True)
class QueueStatus:
    """One task queue: what waits on it and who consumes it."""

    queue: str
    topic: str
    group: str
    waiting: int
    """Tasks after the group's committed offsets (or the topic's start, if it never
    committed); commit markers are not counted (see :data:`COUNT_LIMIT`)."""
    processors: int
    """Members of the queue's processor group now."""

    @property
    def unserved(self) -> bool:
        """Tasks wait and no processor consumes the queue."""
        return self.waiting > 0 and self.processors == 0

    def problem(self) -> str | None:
        """What an operator should read about this queue, if anything."""
        if not self.unserved:
            return None
        return (
            f"no processor serves queue {self.queue!r}: {self.waiting} task(s) waiting on "
            f"{self.topic}; start one with `kflow run processor --queue {self.queue}` "
            "(or `kflow run all`, which serves every queue of the applied definitions)"
        )


def queue_status(bootstrap: str, prefix: str, timeout_s: float = 10.0) -> list[QueueStatus]:
    """The status of every task queue of ``prefix`` (one tasks topic each), by queue name."""
    names = topic_names(prefix)
    admin = make_admin(bootstrap)
    try:
        metadata = admin.list_topics(timeout=timeout_s)
        topics = {
            queue: (topic, sorted(info.partitions))
            for topic, info in metadata.topics.items()
            if (queue := names.queue_of(topic)) is not None and info.error is None
        }
        groups = {queue: f"{prefix}.processor.{queue}" for queue in topics}
        members: dict[str, int] = {}
        if groups:
            described = admin.describe_consumer_groups(
                list(groups.values()), request_timeout=timeout_s
            )
            members = {g: len(f.result().members or []) for g, f in described.items()}
        committed: dict[tuple[str, int], int] = {}
        for group in groups.values():
            fut = admin.list_consumer_group_offsets(
                [ConsumerGroupTopicPartitions(group)], request_timeout=timeout_s
            )[group]
            for tp in fut.result().topic_partitions or []:
                if tp.offset >= 0:
                    committed[(tp.topic, tp.partition)] = tp.offset
        partitions = [TopicPartition(t, p) for t, ps in topics.values() for p in ps]
        ends = _offsets(admin, partitions, OffsetSpec.latest(), timeout_s)  # type: ignore[no-untyped-call]
        firsts = _offsets(admin, partitions, OffsetSpec.earliest(), timeout_s)  # type: ignore[no-untyped-call]
    except KafkaException as e:
        raise LagUnavailable(f"Kafka at {bootstrap} did not answer the queue query: {e}") from e
    starts = {tp: max(committed.get(tp, firsts.get(tp, 0)), firsts.get(tp, 0)) for tp in ends}
    unserved = {topics[q][0] for q, g in groups.items() if not members.get(g)}
    waiting = _waiting(bootstrap, starts, ends, unserved, timeout_s)
    out: list[QueueStatus] = []
    for queue, (topic, parts) in sorted(topics.items()):
        group = groups[queue]
        count = sum(waiting.get((topic, p), 0) for p in parts)
        out.append(QueueStatus(queue, topic, group, count, members.get(group, 0)))
    return out


def _waiting(
    bootstrap: str,
    starts: dict[tuple[str, int], int],
    ends: dict[tuple[str, int], int],
    exact: set[str],
    timeout_s: float,
) -> dict[tuple[str, int], int]:
    """Tasks between ``starts`` and ``ends`` per partition. On ``exact`` topics (queues with
    no processor: what an operator reads) they are counted one by one when at most
    ``COUNT_LIMIT`` offsets apart (markers are not tasks); elsewhere, and further behind, it
    is the offsets between, or 0 when no task is left (one read to the first record)."""
    waiting: dict[tuple[str, int], int] = {}
    small: dict[str, dict[int, int]] = {}
    large: set[tuple[str, int, int | None]] = set()
    for (topic, partition), end in ends.items():
        start = starts[(topic, partition)]
        if start >= end:
            continue
        if topic in exact and end - start <= COUNT_LIMIT:
            small.setdefault(topic, {})[partition] = start
        else:
            large.add((topic, partition, start))
    for topic, offsets in sorted(small.items()):
        try:
            with TopicReader(bootstrap, topic, partitions=offsets, start=offsets) as reader:
                for record in reader.read_to_end(timeout_s):
                    if record.offset < ends[(topic, record.partition)]:
                        key = (topic, record.partition)
                        waiting[key] = waiting.get(key, 0) + 1
        except ReaderError as e:
            log.info("tasks of %s counted from offsets: %s", topic, e)
            large.update((topic, p, o) for p, o in offsets.items())
    for topic, partition, first in with_records(bootstrap, large, timeout_s):
        waiting[(topic, partition)] = ends[(topic, partition)] - (first or 0)
    return waiting


def _offsets(
    admin: AdminClient, partitions: list[TopicPartition], spec: OffsetSpec, timeout_s: float
) -> dict[tuple[str, int], int]:
    if not partitions:
        return {}
    futs = admin.list_offsets(
        dict.fromkeys(partitions, spec),
        isolation_level=IsolationLevel.READ_COMMITTED,
        request_timeout=timeout_s,
    )
    return {(tp.topic, tp.partition): f.result().offset for tp, f in futs.items()}


def publish_queue_metrics(statuses: list[QueueStatus]) -> None:
    """Set the ``kflow_queue_*`` gauges from ``statuses``."""
    for s in statuses:
        QUEUE_WAITING.labels(s.queue).set(s.waiting)
        QUEUE_PROCESSORS.labels(s.queue).set(s.processors)
        QUEUE_UNSERVED.labels(s.queue).set(1 if s.unserved else 0)


class QueueWatch:
    """Refreshes the ``kflow_queue_*`` gauges every ``interval_s`` from a daemon thread and
    logs a warning when a queue becomes unserved while tasks wait on it (and when it is
    served again): once per change, not every refresh."""

    def __init__(self, bootstrap: str, prefix: str, interval_s: float = 15.0) -> None:
        self.bootstrap = bootstrap
        self.prefix = prefix
        self.interval_s = interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="queues", daemon=True)
        self._unserved: set[str] = set()

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def check(self) -> list[QueueStatus]:
        """One refresh: the statuses, with the gauges set and problems logged."""
        statuses = queue_status(self.bootstrap, self.prefix)
        publish_queue_metrics(statuses)
        unserved = set()
        for s in statuses:
            problem = s.problem()
            if problem is None:
                if s.queue in self._unserved:
                    log.info("queue %r is served again", s.queue, extra={"queue": s.queue})
                continue
            unserved.add(s.queue)
            if s.queue not in self._unserved:
                log.warning("%s", problem, extra={"queue": s.queue})
        self._unserved = unserved
        return statuses

    def _run(self) -> None:
        while True:
            try:
                self.check()
            except LagUnavailable as e:
                log.info("queue status not refreshed: %s", e)
            if self._stop.wait(self.interval_s):
                return
