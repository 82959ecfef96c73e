"""A round trip through the running stack: Kafka (transactional), PostgreSQL and Redis.

Run by ``make demo`` until the workflow demo exists. Exit code 0 means every server works.
"""

from __future__ import annotations

import sys
import time
import uuid

import psycopg
import redis
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, Producer, TopicPartition

from kflow.bus.topics import topic_names
from kflow.settings import get_settings


def main() -> int:
    settings = get_settings()
    topic = topic_names(settings.topic_prefix).commands
    key = f"smoke-{uuid.uuid4().hex[:8]}"
    producer = Producer(
        {"bootstrap.servers": settings.kafka_bootstrap, "transactional.id": f"kflow-{key}"}
    )
    producer.init_transactions(30)
    producer.begin_transaction()
    producer.produce(topic, key=key, value=b'{"smoke": true}')
    producer.commit_transaction(30)
    print(f"kafka    produced 1 record to {topic} in a committed transaction (key {key})")

    consumer = Consumer(
        {
            "bootstrap.servers": settings.kafka_bootstrap,
            "group.id": key,
            "isolation.level": "read_committed",
            "enable.auto.commit": False,
        }
    )
    parts = consumer.list_topics(topic, timeout=10).topics[topic].partitions
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in parts])
    found = False
    deadline = time.monotonic() + 30
    while not found and time.monotonic() < deadline:
        msg = consumer.poll(0.5)
        if msg is None:
            continue
        err = msg.error()
        if err is not None and err.code() != KafkaError._PARTITION_EOF:
            print(f"kafka    read error: {err.str()}", file=sys.stderr)
            return 1
        found = err is None and msg.key() == key.encode()
    consumer.close()
    if not found:
        print(f"kafka    record {key} not read back from {topic} within 30 s", file=sys.stderr)
        return 1
    print(f"kafka    read it back with a read_committed consumer from {topic}")

    with psycopg.connect(settings.database_url, connect_timeout=5) as conn:
        row = conn.execute("SELECT current_user, current_database(), version()").fetchone()
    if row is None:
        print("postgres returned no row for SELECT current_user", file=sys.stderr)
        return 1
    print(f"postgres {row[0]}@{row[1]}: {row[2].split(',')[0]}")

    client = redis.Redis.from_url(settings.redis_url, socket_timeout=5)
    client.set(f"kflow:smoke:{key}", "ok", ex=60)
    value = client.get(f"kflow:smoke:{key}")
    client.close()
    print(f"redis    SET/GET kflow:smoke:{key} -> {value!r}")
    print("smoke round trip OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
