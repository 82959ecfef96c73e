"""Waiting for the last stable offset: a restore must not read around an open transaction."""

from __future__ import annotations

import threading

import pytest
from confluent_kafka import Producer

from kflow.bus.admin import TopicAdminError, wait_until_stable
from kflow.bus.topics import TopicNames
from tests.bus.kafka_helpers import end_offsets

pytestmark = pytest.mark.integration


@pytest.mark.topics(partitions=2, queues=())
def test_waits_for_an_open_transaction_and_names_the_partition(
    kafka_bootstrap: str, topics: TopicNames
) -> None:
    topic = topics.events
    wait_until_stable(kafka_bootstrap, topic, [0, 1], timeout_s=10)  # nothing open: returns

    producer = Producer(
        {"bootstrap.servers": kafka_bootstrap, "transactional.id": f"{topics.prefix}.open"}
    )
    producer.init_transactions(10)
    producer.begin_transaction()
    producer.produce(topic, b"pending", b"k", partition=1)
    assert producer.flush(10) == 0

    with pytest.raises(TopicAdminError, match=r"partitions \[1\] still have an open transaction"):
        wait_until_stable(kafka_bootstrap, topic, [0, 1], timeout_s=1)
    wait_until_stable(kafka_bootstrap, topic, [0], timeout_s=10)  # partition 0 is not blocked

    committer = threading.Timer(0.5, producer.commit_transaction, args=(10,))
    committer.start()
    wait_until_stable(kafka_bootstrap, topic, [0, 1], timeout_s=30)
    committer.join()
    assert end_offsets(kafka_bootstrap, topic)[1] == 2  # the record and its commit marker
