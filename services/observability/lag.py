"""Consumer lag per group, topic and partition: committed offset versus end offset.

On a transactional topic the end offset counts commit markers no consumer is ever given:
a group that consumed everything commits ``offset + 1`` of the last record, one (or more)
below the end. So a partition whose committed offset is below the end is read from there
until its first record or its end (:meth:`kflow.bus.reader.TopicReader.first_records`):
no record means nothing is left to consume, and the lag is 0 (ADR 0015).
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, replace

from confluent_kafka import (
    ConsumerGroupTopicPartitions,
    IsolationLevel,
    KafkaException,
    TopicPartition,
)
from confluent_kafka.admin import OffsetSpec  # type: ignore[attr-defined]

from kflow.bus.clients import make_admin
from kflow.bus.reader import ReaderError, TopicReader
from kflow.core.errors import KflowError
from kflow.observability.metrics import CONSUMER_LAG

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LagRow:
    """One partition's position for one consumer group."""

    group: str
    topic: str
    partition: int
    committed: int | None
    end: int
    drained: bool = False
    """Nothing is left to consume after ``committed``, though it is below ``end`` (markers)."""

    @property
    def lag(self) -> int:
        """Offsets not yet consumed (everything, if the group never committed; 0 if drained).

        While records are left, transaction markers among them are counted too, as Kafka's
        own tools do.
        """
        if self.committed is None:
            return self.end
        return 0 if self.drained else max(0, self.end - self.committed)


class LagUnavailable(KflowError):
    """Kafka did not answer the lag queries; the message says which."""


def consumer_lag(bootstrap: str, group_prefix: str, timeout_s: float = 10.0) -> list[LagRow]:
    """Lag of every consumer group whose id starts with ``group_prefix``.

    The end offset is the last stable offset (read_committed), which is what a
    transactional consumer can reach; a group below it with no record left to consume
    there has lag 0 (see the module docstring).
    """
    admin = make_admin(bootstrap)
    try:
        listed = admin.list_consumer_groups(request_timeout=timeout_s).result()
        groups = sorted(g.group_id for g in listed.valid if g.group_id.startswith(group_prefix))
        committed: dict[tuple[str, str, int], int] = {}
        for group in groups:
            fut = admin.list_consumer_group_offsets(
                [ConsumerGroupTopicPartitions(group)], request_timeout=timeout_s
            )[group]
            for tp in fut.result().topic_partitions or []:
                committed[(group, tp.topic, tp.partition)] = tp.offset
        partitions = {TopicPartition(t, p) for (_, t, p) in committed}
        ends: dict[tuple[str, int], int] = {}
        if partitions:
            futs = admin.list_offsets(
                {tp: OffsetSpec.latest() for tp in partitions},  # type: ignore[no-untyped-call]
                isolation_level=IsolationLevel.READ_COMMITTED,
                request_timeout=timeout_s,
            )
            for tp, f in futs.items():
                ends[(tp.topic, tp.partition)] = f.result().offset
    except KafkaException as e:
        raise LagUnavailable(f"Kafka at {bootstrap} did not answer the lag query: {e}") from e
    rows = [
        LagRow(g, t, p, off if off >= 0 else None, ends.get((t, p), 0))
        for (g, t, p), off in sorted(committed.items())
    ]
    behind: set[tuple[str, int, int | None]] = {
        (r.topic, r.partition, r.committed)
        for r in rows
        if r.committed is not None and r.committed < r.end
    }
    drained = behind - with_records(bootstrap, behind, timeout_s)
    rows = [
        replace(r, drained=True) if (r.topic, r.partition, r.committed) in drained else r
        for r in rows
    ]
    for r in rows:
        CONSUMER_LAG.labels(r.group, r.topic, str(r.partition)).set(r.lag)
    return rows


def with_records(
    bootstrap: str, starts: set[tuple[str, int, int | None]], timeout_s: float
) -> set[tuple[str, int, int | None]]:
    """Of ``(topic, partition, offset)``, those with a record to consume from ``offset`` on.

    One reader per topic reads every partition at once (groups at different offsets of one
    partition take another round). A position that cannot be read in time keeps counting
    as behind: it is never reported drained on a guess.
    """
    rounds: dict[tuple[str, int], dict[int, int]] = {}
    for topic, partition, offset in sorted(starts, key=str):
        if offset is None:
            continue
        n = 0
        while partition in rounds.setdefault((topic, n), {}):
            n += 1
        rounds[(topic, n)][partition] = offset
    left: set[tuple[str, int, int | None]] = set()
    for (topic, _n), offsets in sorted(rounds.items()):
        if not offsets:
            continue
        try:
            with TopicReader(bootstrap, topic, partitions=offsets, start=offsets) as reader:
                found = reader.first_records(timeout_s)
        except ReaderError as e:
            log.info("lag of %s %s counted from the end offset: %s", topic, sorted(offsets), e)
            found = set(offsets)
        left.update((topic, p, offsets[p]) for p in found)
    return left


class LagRefresher:
    """Refreshes ``kflow_consumer_lag`` for groups starting with ``group_prefix`` every
    ``interval_s`` from a daemon thread; a failed query is logged and retried next time."""

    def __init__(self, bootstrap: str, group_prefix: str, interval_s: float = 15.0) -> None:
        self.bootstrap = bootstrap
        self.group_prefix = group_prefix
        self.interval_s = interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="lag", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        while True:
            try:
                consumer_lag(self.bootstrap, self.group_prefix)
            except LagUnavailable as e:
                log.info("consumer lag not refreshed: %s", e)
            if self._stop.wait(self.interval_s):
                return
