"""Consumer lag per group, topic and partition: committed offset versus end offset."""

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
from confluent_kafka.admin import OffsetSpec  # type: ignore[attr-defined]

from kflow.bus.clients import make_admin
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

    @property
    def lag(self) -> int:
        """Records not yet consumed (everything, if the group never committed)."""
        return self.end if self.committed is None else max(0, self.end - self.committed)


class LagUnavailable(KflowError):
    """Kafka did not answer the lag queries; the message says which."""


def consumer_lag(bootstrap: str, group_prefix: str, timeout_s: float = 10.0) -> list[LagRow]:
    """Lag of every consumer group whose id starts with ``group_prefix``.

    The end offset is the last stable offset (read_committed), which is what a
    transactional consumer can reach.
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
    for r in rows:
        CONSUMER_LAG.labels(r.group, r.topic, str(r.partition)).set(r.lag)
    return rows


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
