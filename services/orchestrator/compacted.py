"""Read partitions of a compacted topic ``read_committed`` to their end (latest value per key).

Used on partition assignment to restore snapshots and closed markers: both are written
in the same transaction as the input offsets, so reading to the end gives exactly what
the committed offsets describe, provided no transaction is still open on the partition
(a read_committed reader stops at the last stable offset): we wait for that first.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Iterable

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition

from kflow.bus.admin import TopicAdminError, wait_until_stable
from kflow.bus.message import key_text

log = logging.getLogger(__name__)


class RestoreError(Exception):
    """A partition could not be read to its end."""


def read_latest(
    bootstrap: str, topic: str, partitions: Iterable[int], timeout_s: float = 60.0
) -> dict[int, dict[str, bytes | None]]:
    """Latest value per key (``None`` = tombstone) in each of ``partitions`` of ``topic``."""
    wanted = sorted(set(partitions))
    raw: dict[int, dict[str, bytes | None]] = {p: {} for p in wanted}
    if not wanted:
        return raw
    try:
        # A previous owner's last transaction may still be open (it died, or it is
        # committing right now); its offsets are what our consumer will resume from.
        wait_until_stable(bootstrap, topic, wanted, timeout_s)
    except TopicAdminError as e:
        raise RestoreError(str(e)) from e
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"restore-{uuid.uuid4().hex}",
            "enable.auto.commit": False,
            "enable.partition.eof": True,
            "isolation.level": "read_committed",
            "fetch.wait.max.ms": 10,
            "log_level": 3,
        }
    )
    try:
        ends = {
            p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10, cached=False)
            for p in wanted
        }
        pending = {p for p in wanted if ends[p][1] > ends[p][0]}
        if not pending:
            return raw
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in sorted(pending)])
        deadline = time.monotonic() + timeout_s
        while pending:
            if time.monotonic() > deadline:
                raise RestoreError(
                    f"{topic} partitions {sorted(pending)} not read to the end in {timeout_s}s"
                )
            for message in consumer.consume(1000, 0.2):
                error = message.error()
                partition = message.partition() or 0
                if error is not None:
                    if error.code() == KafkaError._PARTITION_EOF:
                        pending.discard(partition)
                    else:
                        log.warning("restore of %s: %s", topic, error.str())
                    continue
                key = key_text(message.key())
                if key is not None:
                    value = message.value()
                    raw[partition][key] = value.encode() if isinstance(value, str) else value
        return raw
    finally:
        consumer.close()
