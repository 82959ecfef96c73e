"""The one topic reader, on the real broker, on logs written with transactions."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Sequence

import pytest
from confluent_kafka import Producer

from kflow.bus.admin import create_topics, delete_topics
from kflow.bus.reader import (
    RawRecord,
    ReaderError,
    TopicReader,
    partition_for,
    read_key,
    read_latest,
    record_ends,
)
from kflow.bus.topics import TopicSpec

pytestmark = pytest.mark.integration

HANG_S = 60.0  # a safety net against hangs, not a speed assertion


@pytest.fixture
def topic(kafka_bootstrap: str) -> object:
    name = f"test-reader-{uuid.uuid4().hex[:10]}"
    create_topics(kafka_bootstrap, [TopicSpec(name, 3, {})])
    yield name
    delete_topics(kafka_bootstrap, [name])


def transactional_write(
    bootstrap: str, topic: str, records: Sequence[tuple[str, bytes | None]]
) -> None:
    """One committed transaction per record: the log ends in a commit marker."""
    producer = Producer(
        {"bootstrap.servers": bootstrap, "transactional.id": f"test-{uuid.uuid4().hex}"}
    )
    producer.init_transactions(30)
    for key, value in records:
        producer.begin_transaction()
        producer.produce(topic, key=key, value=value)
        producer.commit_transaction(30)


def test_read_to_end_stops_after_the_last_record_of_a_transactional_log(
    kafka_bootstrap: str, topic: str
) -> None:
    records = [(f"k{i}", f"v{i}".encode()) for i in range(12)]
    transactional_write(kafka_bootstrap, topic, records)
    with TopicReader(kafka_bootstrap, topic) as reader:
        got = list(reader.read_to_end(timeout_s=30))
    assert sorted((r.key, r.value) for r in got) == sorted(records)
    for key, _ in records:
        assert all(r.partition == partition_for(r.key or "", 3) for r in got if r.key == key)


def test_read_latest_keeps_the_last_value_and_tombstones(kafka_bootstrap: str, topic: str) -> None:
    transactional_write(
        kafka_bootstrap, topic, [("a", b"1"), ("b", b"1"), ("a", b"2"), ("b", None)]
    )
    latest = read_latest(kafka_bootstrap, topic, range(3), timeout_s=30)
    merged = {k: v for per_partition in latest.values() for k, v in per_partition.items()}
    assert merged == {"a": b"2", "b": None}


def test_read_key_reads_only_that_keys_records(kafka_bootstrap: str, topic: str) -> None:
    transactional_write(kafka_bootstrap, topic, [(f"w{i % 4}", str(i).encode()) for i in range(16)])
    got = list(read_key(kafka_bootstrap, topic, "w1", timeout_s=30))
    assert [r.value for r in got] == [b"1", b"5", b"9", b"13"]


def test_follow_from_the_end_sees_only_new_records(kafka_bootstrap: str, topic: str) -> None:
    transactional_write(kafka_bootstrap, topic, [("old", b"old")])
    with TopicReader(kafka_bootstrap, topic, start="end") as reader:
        assert list(reader.read_to_end(timeout_s=30)) == []
        transactional_write(kafka_bootstrap, topic, [("new", b"new")])
        seen = next(r for r in reader.follow(timeout_s=30))
    assert (seen.key, seen.value) == ("new", b"new")


def test_poll_returns_at_the_first_record_not_at_the_timeout(
    kafka_bootstrap: str, topic: str
) -> None:
    reader = TopicReader(kafka_bootstrap, topic, start="end")
    assert list(reader.read_to_end(timeout_s=30)) == []
    got: list[RawRecord] = []

    def wait() -> None:
        while not got:  # a poll may return only an end-of-partition event
            got.extend(reader.poll(timeout_s=3600))

    waiter = threading.Thread(target=wait, daemon=True)
    waiter.start()
    transactional_write(kafka_bootstrap, topic, [("one", b"1")])
    waiter.join(HANG_S)
    # consume(1000, timeout) would wait for 1000 records or the whole hour
    assert not waiter.is_alive(), f"poll(timeout_s=3600) still waiting {HANG_S}s after a record"
    reader.close()  # not while the waiter is inside the consumer
    assert [(r.key, r.value) for r in got] == [("one", b"1")]


def test_a_missing_topic_is_named_with_the_fix(kafka_bootstrap: str) -> None:
    with pytest.raises(ReaderError, match=r"nope-\w+ does not exist; run `kflow topics create`"):
        TopicReader(kafka_bootstrap, f"nope-{uuid.uuid4().hex[:8]}")


def test_read_to_end_again_finishes_and_returns_only_what_was_written_since(
    kafka_bootstrap: str, topic: str
) -> None:
    transactional_write(kafka_bootstrap, topic, [("a", b"1"), ("b", b"1")])
    with TopicReader(kafka_bootstrap, topic) as reader:
        assert len(list(reader.read_to_end(timeout_s=30))) == 2
        assert list(reader.read_to_end(timeout_s=10)) == []
        transactional_write(kafka_bootstrap, topic, [("a", b"2"), ("c", b"1")])
        again = list(reader.read_to_end(timeout_s=10))
    assert sorted((r.key, r.value) for r in again) == [("a", b"2"), ("c", b"1")]


def test_read_to_end_without_time_fails_instead_of_returning_a_part(
    kafka_bootstrap: str, topic: str
) -> None:
    transactional_write(kafka_bootstrap, topic, [("a", b"1")])
    with (
        TopicReader(kafka_bootstrap, topic) as reader,
        pytest.raises(ReaderError, match=r"partition\(s\) \[0, 1, 2\] not read to the end in 0s"),
    ):
        list(reader.read_to_end(timeout_s=0))


def test_record_ends_are_past_the_last_record_not_the_commit_marker(
    kafka_bootstrap: str, topic: str
) -> None:
    records = [(f"k{i}", b"v") for i in range(9)]
    transactional_write(kafka_bootstrap, topic, records)
    aborted = Producer(
        {"bootstrap.servers": kafka_bootstrap, "transactional.id": f"test-{uuid.uuid4().hex}"}
    )
    aborted.init_transactions(30)
    aborted.begin_transaction()
    for _ in range(300):  # more than the first tail window: the search must widen
        aborted.produce(topic, key="k0", value=b"aborted")
    aborted.flush(30)
    aborted.abort_transaction(30)
    with TopicReader(kafka_bootstrap, topic) as reader:
        last = {p: 0 for p in range(3)}
        for r in reader.read_to_end(timeout_s=30):
            last[r.partition] = r.offset + 1
        ends = {p: end for p, (_low, end) in reader.bounds().items()}
    assert record_ends(kafka_bootstrap, topic, timeout_s=30, tail=16) == last
    assert all(ends[p] > last[p] for p in last if last[p])  # the markers are past them
