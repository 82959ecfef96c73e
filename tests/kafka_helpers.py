"""Small Kafka helpers for tests: produce records and read a topic to its end."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable

from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaError,
    Message,
    Producer,
    TopicPartition,
)

from kflow.bus.clients import make_producer


def produce(
    bootstrap: str,
    topic: str,
    records: Iterable[tuple[bytes | str | None, bytes | str | None]],
    *,
    transactional: bool = False,
) -> int:
    """Produce ``(key, value)`` records, wait for delivery; return how many were sent.

    ``transactional``: in one committed transaction, with the producer settings the
    orchestrator uses, so the log holds a commit marker after the records as it does in
    production.
    """
    if transactional:
        producer = make_producer(bootstrap, transactional_id=f"test-{uuid.uuid4().hex}")
        producer.init_transactions(30)
        producer.begin_transaction()
    else:
        producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True})
    errors: list[str] = []

    def on_delivery(err: KafkaError | None, msg: Message) -> None:
        if err is not None:
            errors.append(f"{msg.topic()}: {err.str()}")

    count = 0
    for key, value in records:
        producer.produce(topic, key=key, value=value, on_delivery=on_delivery)
        producer.poll(0)
        count += 1
    if transactional:
        producer.commit_transaction(30)
    remaining = producer.flush(30)
    if remaining or errors:
        raise AssertionError(f"produce to {topic} failed: {remaining} undelivered, errors {errors}")
    return count


def consume_all(
    bootstrap: str,
    topic: str,
    *,
    isolation_level: str = "read_committed",
    timeout_s: float = 30.0,
    min_records: int = 0,
) -> list[Message]:
    """Every record of ``topic`` from offset 0 up to the end of each partition, in order.

    Stops once every partition reports end-of-partition and at least ``min_records``
    records arrived (use it when producers may still be writing); raises
    ``AssertionError`` after ``timeout_s`` so a test never hangs. With
    ``read_committed`` the end is the last stable offset: aborted and open
    transactions are not returned.
    """
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"test-reader-{uuid.uuid4().hex}",
            "enable.auto.commit": False,
            "enable.partition.eof": True,
            "isolation.level": isolation_level,
        }
    )
    try:
        metadata = consumer.list_topics(topic, timeout=10)
        partitions = sorted(metadata.topics[topic].partitions)
        if not partitions:
            raise AssertionError(f"topic {topic} does not exist")
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
        at_end: set[int] = set()
        records: list[Message] = []
        deadline = time.monotonic() + timeout_s
        while len(at_end) < len(partitions) or len(records) < min_records:
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"reading {topic}: {len(records)} records, {len(at_end)}/{len(partitions)} "
                    f"partitions at end after {timeout_s}s (wanted >= {min_records})"
                )
            msg = consumer.poll(0.5)
            if msg is None:
                continue
            err = msg.error()
            if err is not None:
                if err.code() == KafkaError._PARTITION_EOF:
                    at_end.add(msg.partition() or 0)
                    continue
                raise AssertionError(f"reading {topic}: {err.str()}")
            at_end.discard(msg.partition() or 0)
            records.append(msg)
        return records
    finally:
        consumer.close()


def values(messages: Iterable[Message]) -> list[bytes]:
    """The values of ``messages`` (tombstones skipped)."""
    return [v for m in messages if (v := m.value()) is not None]
