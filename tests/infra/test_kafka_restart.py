"""A broker restart keeps committed records (a dedicated broker, so the shared one is untouched)."""

from __future__ import annotations

import uuid

import pytest
from confluent_kafka import Producer

from kflow.bus.admin import create_topics
from kflow.bus.topics import TopicSpec
from tests.kafka_helpers import consume_all, values
from tests.readside.dedicated import DedicatedKafka

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_committed_records_survive_a_restart(private_kafka: DedicatedKafka) -> None:
    broker = private_kafka
    topic = f"restart-{uuid.uuid4().hex[:8]}"
    create_topics(broker.bootstrap, [TopicSpec(topic, 2)])
    producer = Producer(
        {"bootstrap.servers": broker.bootstrap, "transactional.id": f"t-{uuid.uuid4().hex}"}
    )
    producer.init_transactions(30)
    producer.begin_transaction()
    for i in range(20):
        producer.produce(topic, key=f"wf-{i % 4}".encode(), value=str(i).encode())
    producer.commit_transaction(30)
    cluster_id = (broker.data / "meta.properties").read_text()

    assert "stopped" in broker.run("down")
    assert "not running" in broker.run("down")  # idempotent
    broker.run("up")
    assert "already running" in broker.run("up")  # idempotent

    assert (broker.data / "meta.properties").read_text() == cluster_id  # not re-formatted
    got = values(consume_all(broker.bootstrap, topic, timeout_s=60))
    assert sorted(int(v) for v in got) == list(range(20))
