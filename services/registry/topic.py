"""Publish definitions to ``{prefix}.definitions`` and follow it into a :class:`DefinitionStore`."""

from __future__ import annotations

import logging
import threading
import time
import uuid

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, TopicPartition

from kflow.bus.clients import make_producer
from kflow.bus.contracts import default_contracts
from kflow.bus.errors import DecodeError
from kflow.bus.records import WorkflowDefinitionRecord
from kflow.bus.topics import topic_names
from kflow.core.definition import WorkflowDefinition, parse_definition
from kflow.core.errors import DefinitionError
from kflow.registry.store import DefinitionStore

log = logging.getLogger(__name__)


class RegistryError(Exception):
    """The definitions topic could not be written or read (the message says what to check)."""


def publish_definition(
    bootstrap: str, prefix: str, definition: WorkflowDefinition, actor: str | None = None
) -> str:
    """Write ``definition`` (already validated) to the definitions topic; returns its key."""
    record = WorkflowDefinitionRecord(
        name=definition.name,
        version=definition.version,
        definition=definition.to_dict(),
        registered_at=time.time_ns() // 1_000_000,
        actor=actor,
    )
    producer = make_producer(bootstrap, overrides={"linger.ms": 0, "message.timeout.ms": 15_000})
    errors: list[str] = []

    def on_delivery(err: KafkaError | None, _msg: object) -> None:
        if err is not None:
            errors.append(err.str())

    topic = topic_names(prefix).definitions
    producer.produce(
        topic, default_contracts().encode_definition(record), record.key, on_delivery=on_delivery
    )
    if producer.flush(20) or errors:
        raise RegistryError(
            f"could not write {record.key} to {topic} at {bootstrap}: "
            f"{'; '.join(errors) or 'timed out'}; is Kafka up and the topic created "
            "(`kflow topics create`)?"
        )
    return record.key


class DefinitionFollower:
    """Reads the whole definitions topic into ``store`` and keeps following it.

    ``catch_up()`` blocks until every record present now has been read;
    ``start()`` follows updates on a daemon thread.
    """

    def __init__(self, bootstrap: str, prefix: str, store: DefinitionStore | None = None) -> None:
        self.store = store or DefinitionStore()
        self._topic = topic_names(prefix).definitions
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._consumer = Consumer(
            {
                "bootstrap.servers": bootstrap,
                "group.id": f"{prefix}.registry-reader.{uuid.uuid4().hex}",
                "enable.auto.commit": False,
                "fetch.wait.max.ms": 50,
                "log_level": 3,
            }
        )
        try:
            metadata = self._consumer.list_topics(self._topic, timeout=10)
        except KafkaException as e:
            raise RegistryError(f"cannot reach Kafka at {bootstrap}: {e}") from e
        topic_meta = metadata.topics.get(self._topic)
        if topic_meta is None or topic_meta.error is not None or not topic_meta.partitions:
            raise RegistryError(
                f"topic {self._topic} does not exist; create it with `kflow topics create`"
            )
        self._partitions = sorted(topic_meta.partitions)
        self._consumer.assign(
            [TopicPartition(self._topic, p, OFFSET_BEGINNING) for p in self._partitions]
        )

    def catch_up(self, timeout_s: float = 30.0) -> None:
        """Read until the end of every partition (as of now)."""
        with self._lock:
            deadline = time.monotonic() + timeout_s
            targets = {
                p: self._consumer.get_watermark_offsets(
                    TopicPartition(self._topic, p), timeout=10, cached=False
                )[1]
                for p in self._partitions
            }
            while True:
                positions = self._consumer.position(
                    [TopicPartition(self._topic, p) for p in self._partitions]
                )
                if all(
                    tp.offset >= targets[tp.partition] or targets[tp.partition] == 0
                    for tp in positions
                ):
                    return
                if time.monotonic() > deadline:
                    raise RegistryError(f"reading {self._topic} did not finish in {timeout_s}s")
                self._poll_once(0.1)

    def start(self) -> None:
        """Follow new definitions on a daemon thread."""
        self._thread = threading.Thread(target=self._follow, name="definitions", daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Stop following and close the consumer."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
        self._consumer.close()

    def _follow(self) -> None:
        while not self._stop.is_set():
            with self._lock:
                self._poll_once(0.2)

    def _poll_once(self, timeout_s: float) -> None:
        message = self._consumer.poll(timeout_s)
        if message is None:
            return
        error = message.error()
        if error is not None:
            if error.code() != KafkaError._PARTITION_EOF:
                log.warning("definitions consumer: %s", error.str())
            return
        key = message.key()
        value = message.value()
        if value is None:
            name, _, version = (key.decode() if isinstance(key, bytes) else str(key)).rpartition(
                "@"
            )
            if version.isdigit():
                self.store.remove(name, int(version))
            return
        try:
            record = default_contracts().decode_definition(
                value if isinstance(value, bytes) else value.encode()
            )
            self.store.put(parse_definition(record.definition))
        except (DecodeError, DefinitionError) as e:
            log.warning("skipping unreadable definition at offset %s: %s", message.offset(), e)
