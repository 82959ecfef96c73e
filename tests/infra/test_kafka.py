"""The real broker: plain and transactional produce/consume, and the topic admin helpers."""

from __future__ import annotations

import uuid

import pytest
from confluent_kafka import KafkaError, Message, Producer

from kflow.bus.admin import create_topics, list_topics, topic_config
from kflow.bus.topics import MAX_RECORD_BYTES, TopicNames, TopicSpec, topic_specs
from tests.kafka_helpers import consume_all, produce, values

pytestmark = pytest.mark.integration


def test_produce_then_consume_in_partition_order(kafka_bootstrap: str, topics: TopicNames) -> None:
    sent = [(b"wf-1", f"v{i}".encode()) for i in range(50)]
    produce(kafka_bootstrap, topics.commands, sent)

    got = consume_all(kafka_bootstrap, topics.commands)

    assert values(got) == [v for _, v in sent]  # one key: one partition, order kept
    assert {m.key() for m in got} == {b"wf-1"}


def _transactional_producer(bootstrap: str) -> Producer:
    producer = Producer(
        {
            "bootstrap.servers": bootstrap,
            "transactional.id": f"test-{uuid.uuid4().hex}",
            "transaction.timeout.ms": 10000,
        }
    )
    producer.init_transactions(30)
    return producer


def test_aborted_records_are_invisible_to_read_committed(
    kafka_bootstrap: str, topics: TopicNames
) -> None:
    producer = _transactional_producer(kafka_bootstrap)
    for batch, commit in (("first", True), ("aborted", False), ("last", True)):
        producer.begin_transaction()
        for i in range(3):
            producer.produce(topics.events, key=b"wf", value=f"{batch}-{i}".encode())
        if commit:
            producer.commit_transaction(30)
        else:
            producer.flush(30)  # the aborted records really reach the log
            producer.abort_transaction(30)

    committed = values(consume_all(kafka_bootstrap, topics.events))
    uncommitted = values(
        consume_all(kafka_bootstrap, topics.events, isolation_level="read_uncommitted")
    )

    assert committed == [f"{b}-{i}".encode() for b in ("first", "last") for i in range(3)]
    assert {f"aborted-{i}".encode() for i in range(3)} <= set(uncommitted)


def test_open_transaction_is_not_read_until_committed(
    kafka_bootstrap: str, topics: TopicNames
) -> None:
    producer = _transactional_producer(kafka_bootstrap)
    producer.begin_transaction()
    producer.produce(topics.results, key=b"wf", value=b"pending")
    producer.flush(30)

    assert consume_all(kafka_bootstrap, topics.results) == []

    producer.commit_transaction(30)
    assert values(consume_all(kafka_bootstrap, topics.results, min_records=1)) == [b"pending"]


def test_create_topics_is_idempotent_and_list_shows_end_offsets(
    kafka_bootstrap: str, topic_prefix: str, topics: TopicNames
) -> None:
    specs = topic_specs(topic_prefix, 2)
    drifted = TopicSpec(topics.events, 2, {"retention.ms": "1000"})
    create_topics(kafka_bootstrap, [drifted])
    assert topic_config(kafka_bootstrap, topics.events)["retention.ms"] == "1000"

    assert create_topics(kafka_bootstrap, specs) == []  # the fixture made them already
    assert topic_config(kafka_bootstrap, topics.events)["retention.ms"] == "-1"  # config restored

    produce(kafka_bootstrap, topics.dlq, [(b"k", b"1"), (b"k", b"2")])
    infos = {i.name: i for i in list_topics(kafka_bootstrap, f"{topic_prefix}.")}

    assert set(infos) == {s.name for s in specs}
    assert infos[topics.dlq].end_offsets == (2,)
    assert infos[topics.events].partitions == 2


def test_topics_accept_records_up_to_max_record_bytes(
    kafka_bootstrap: str, topics: TopicNames
) -> None:
    big = b"x" * (2 * 1024 * 1024)
    producer = Producer(
        {"bootstrap.servers": kafka_bootstrap, "message.max.bytes": MAX_RECORD_BYTES}
    )
    errors: list[str] = []

    def on_delivery(err: KafkaError | None, _msg: Message) -> None:
        if err is not None:
            errors.append(err.str())

    producer.produce(topics.events, key=b"wf", value=big, on_delivery=on_delivery)
    assert producer.flush(30) == 0
    assert errors == []
    assert values(consume_all(kafka_bootstrap, topics.events)) == [big]
