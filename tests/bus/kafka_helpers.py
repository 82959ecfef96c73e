"""Small real-broker helpers for the bus tests (no mocks)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass

from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition


@dataclass(frozen=True)
class Read:
    """One record as a reader saw it."""

    partition: int
    offset: int
    key: str | None
    value: bytes


def produce(
    bootstrap: str, topic: str, records: Iterable[tuple[str, bytes]], partition: int = -1
) -> None:
    """Write ``(key, value)`` records and wait until all are acknowledged."""
    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True})
    for i, (key, value) in enumerate(records):
        producer.produce(topic, value, key, partition=partition)
        if i % 1000 == 0:
            producer.poll(0)
    assert producer.flush(30) == 0, "records were not acknowledged"


def read_all(
    bootstrap: str, topic: str, *, committed_only: bool = True, timeout_s: float = 90.0
) -> list[Read]:
    """Every record of ``topic`` from the beginning up to its high watermark.

    With ``committed_only`` (read_committed) this waits until no transaction is open on
    the topic: a read_committed reader stops at the last stable offset, so records that
    others committed after a dead producer's still-open transaction only become readable
    once the broker aborts it (after ``transaction.timeout.ms``). Reading only to the
    LSO would silently miss them.
    """
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"reader-{uuid.uuid4().hex}",
            "isolation.level": "read_committed" if committed_only else "read_uncommitted",
            "enable.auto.commit": False,
        }
    )
    try:
        partitions = sorted(consumer.list_topics(topic, timeout=10).topics[topic].partitions)
        ends = end_offsets(bootstrap, topic)
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
        found: list[Read] = []
        remaining = {p for p in partitions if ends[p] > 0}
        deadline = time.monotonic() + timeout_s
        while remaining and time.monotonic() < deadline:
            for message in consumer.consume(1000, 0.5):
                if message.error() is None:
                    key = message.key()
                    found.append(
                        Read(
                            message.partition() or 0,
                            message.offset() or 0,
                            key.decode() if isinstance(key, bytes) else key,
                            message.value() or b"",
                        )
                    )
            positions = consumer.position([TopicPartition(topic, p) for p in remaining])
            remaining = {tp.partition for tp in positions if tp.offset < ends[tp.partition]}
        assert not remaining, f"{topic}: could not read to the end of partitions {remaining}"
        return found
    finally:
        consumer.close()


class GroupProgress:
    """Reads a group's committed offsets on ``topic`` (one client, reused; never joins)."""

    def __init__(self, bootstrap: str, group: str, topic: str) -> None:
        # read_uncommitted: do not wait for offsets pending in an open transaction
        # (librdkafka's default read_committed would block until it ends).
        self.consumer = Consumer(
            {
                "bootstrap.servers": bootstrap,
                "group.id": group,
                "isolation.level": "read_uncommitted",
            }
        )
        self.topic = topic
        metadata = self.consumer.list_topics(topic, timeout=10)
        self.partitions = sorted(metadata.topics[topic].partitions)

    def offsets(self) -> dict[int, int]:
        """Committed offset per partition (-1001 when none)."""
        found = self.consumer.committed(
            [TopicPartition(self.topic, p) for p in self.partitions], 30
        )
        return {tp.partition: tp.offset for tp in found}

    def total(self) -> int:
        """Records committed over all partitions."""
        return sum(max(o, 0) for o in self.offsets().values())

    def close(self) -> None:
        self.consumer.close()


def end_offsets(bootstrap: str, topic: str) -> dict[int, int]:
    """The high watermark per partition.

    read_uncommitted on purpose: librdkafka asks the broker for offsets with the
    consumer's isolation level, and under read_committed the "end" is the last stable
    offset, which stops before any open transaction.
    """
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": "unused",
            "isolation.level": "read_uncommitted",
        }
    )
    try:
        partitions = sorted(consumer.list_topics(topic, timeout=10).topics[topic].partitions)
        return {
            p: consumer.get_watermark_offsets(TopicPartition(topic, p), 10)[1] for p in partitions
        }
    finally:
        consumer.close()
