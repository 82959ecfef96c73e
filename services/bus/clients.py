"""confluent-kafka producer and consumer factories with kflow's tuned settings.

Every setting that matters for correctness or speed is set here, with why;
callers pass ``overrides`` only for per-test or per-deployment tuning.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from confluent_kafka import Consumer, Producer

from kflow.core.limits import MAX_RECORD_BYTES

ConfigValue = str | int | float | bool

PRODUCER_DEFAULTS: Mapping[str, ConfigValue] = {
    # Durability: every in-sync replica has the record before it counts as written.
    "acks": "all",
    # No duplicates or reordering from internal retries (required for transactions anyway).
    "enable.idempotence": True,
    # zstd: on our Avro + 1 KB JSON records it sends 0.19 of the payload bytes against
    # lz4's 0.33, and the EOS loop's throughput was the same within noise; the event log
    # is kept forever, so the smaller size wins (bench/bus_bench.py, ADR 0021).
    "compression.type": "zstd",
    # Wait up to 5 ms to fill a batch: large batches at little latency cost.
    "linger.ms": 5,
    "batch.size": 256 * 1024,
    # The largest request equals the topics' max.message.bytes (one number, ADR 0027);
    # the EOS loop refuses a larger record before produce, so this never fails a batch.
    "message.max.bytes": MAX_RECORD_BYTES,
    "log_level": 3,
}

TRANSACTIONAL_DEFAULTS: Mapping[str, ConfigValue] = {
    **PRODUCER_DEFAULTS,
    # A transaction left open by a dead process blocks read_committed readers of its
    # partitions until the broker aborts it; 30 s bounds that stall, and is far above
    # the loop's batch time. A restart with the same transactional.id aborts it at once.
    "transaction.timeout.ms": 30_000,
    # The broker answers CONCURRENT_TRANSACTIONS while it still writes the previous
    # commit's markers; with the default 100 ms backoff, send_offsets_to_transaction
    # took ~50 ms per transaction here, with 5 ms it takes ~6 ms (bench/bus_bench.py,
    # ADR 0021). Backoff still grows exponentially up to retry.backoff.max.ms.
    "retry.backoff.ms": 5,
}

CONSUMER_DEFAULTS: Mapping[str, ConfigValue] = {
    # Only committed transactional records: never act on an aborted batch's output.
    "isolation.level": "read_committed",
    # Offsets are committed by the producer transaction (EOS) or explicitly by the owner.
    "enable.auto.commit": False,
    "enable.auto.offset.store": False,
    "auto.offset.reset": "earliest",
    # Incremental rebalances: an owner keeps the partitions it still has.
    "partition.assignment.strategy": "cooperative-sticky",
    "session.timeout.ms": 10_000,
    "heartbeat.interval.ms": 2_000,
    "max.poll.interval.ms": 300_000,
    "fetch.wait.max.ms": 100,
    "log_level": 3,
}


def producer_config(
    bootstrap: str,
    *,
    transactional_id: str | None = None,
    overrides: Mapping[str, ConfigValue] | None = None,
) -> dict[str, Any]:
    """Producer settings: idempotent always, transactional when given a ``transactional_id``."""
    base = TRANSACTIONAL_DEFAULTS if transactional_id else PRODUCER_DEFAULTS
    config: dict[str, Any] = {"bootstrap.servers": bootstrap, **base}
    if transactional_id:
        config["transactional.id"] = transactional_id
    config.update(overrides or {})
    return config


def consumer_config(
    bootstrap: str,
    group_id: str,
    *,
    instance_id: str | None = None,
    overrides: Mapping[str, ConfigValue] | None = None,
) -> dict[str, Any]:
    """Consumer settings for ``group_id``; ``instance_id`` turns on static membership.

    With static membership a restarted process (same ``instance_id``) takes its
    partitions back at once instead of waiting for a rebalance.
    """
    config: dict[str, Any] = {
        "bootstrap.servers": bootstrap,
        "group.id": group_id,
        **CONSUMER_DEFAULTS,
    }
    if instance_id:
        config["group.instance.id"] = instance_id
    config.update(overrides or {})
    return config


def make_producer(
    bootstrap: str,
    *,
    transactional_id: str | None = None,
    overrides: Mapping[str, ConfigValue] | None = None,
) -> Producer:
    """A producer with :func:`producer_config` (call ``init_transactions`` when transactional)."""
    return Producer(
        producer_config(bootstrap, transactional_id=transactional_id, overrides=overrides)
    )


def make_consumer(
    bootstrap: str,
    group_id: str,
    *,
    instance_id: str | None = None,
    overrides: Mapping[str, ConfigValue] | None = None,
) -> Consumer:
    """A ``read_committed`` consumer with :func:`consumer_config` (not yet subscribed)."""
    return Consumer(
        consumer_config(bootstrap, group_id, instance_id=instance_id, overrides=overrides)
    )
