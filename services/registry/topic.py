"""Publish definitions to ``{prefix}.definitions`` and follow it into a :class:`DefinitionStore`."""

from __future__ import annotations

import logging
import threading
import time

from confluent_kafka import KafkaError

from kflow.bus.clients import make_producer
from kflow.bus.contracts import default_contracts
from kflow.bus.reader import RawRecord, ReaderError, TopicReader
from kflow.bus.records import WorkflowDefinitionRecord
from kflow.bus.topics import topic_names
from kflow.core.definition import WorkflowDefinition
from kflow.core.errors import KflowError
from kflow.registry.checked import check_record
from kflow.registry.store import DefinitionStore, Refused

log = logging.getLogger(__name__)


class RegistryError(KflowError):
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
        try:
            # it follows for the process's lifetime: idle fetches every 50 ms, not 10
            self._reader = TopicReader(bootstrap, self._topic, overrides={"fetch.wait.max.ms": 50})
        except ReaderError as e:
            raise RegistryError(str(e)) from e

    def catch_up(self, timeout_s: float = 30.0) -> None:
        """Read until the end of every partition (as of now)."""
        with self._lock:
            try:
                for record in self._reader.read_to_end(timeout_s):
                    self._apply(record)
            except ReaderError as e:
                raise RegistryError(str(e)) from e

    def start(self) -> None:
        """Follow new definitions on a daemon thread."""
        self._thread = threading.Thread(target=self._follow, name="definitions", daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Stop following and close the reader."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
        self._reader.close()

    def _follow(self) -> None:
        pause = 0.05
        while not self._stop.wait(pause):
            # take what has arrived without waiting under the lock: catch_up() needs it
            with self._lock:
                try:
                    records = self._reader.poll(0)
                    pause = 0 if records else 0.05
                except ReaderError as e:  # e.g. the topic is gone for now: keep what we have
                    log.error("following definitions: %s; trying again in 1s", e)
                    records, pause = [], 1.0
                for record in records:
                    self._apply(record)

    def _apply(self, record: RawRecord) -> None:
        checked = check_record(record.key, record.value)
        if checked.definition is not None:
            self.store.put(checked.definition)
            return
        if checked.refusal is None:
            self.store.remove(checked.name, checked.version)
            return
        # Refused: never listed, never the latest. The dead letter is not ours to write
        # (every orchestrator and CLI reads this topic); the PostgreSQL projector writes it.
        log.warning(
            "refused definition %r at %s[%s]@%s (%s): %s",
            checked.key,
            record.topic,
            record.partition,
            record.offset,
            checked.refusal.reason,
            checked.refusal.message,
        )
        if checked.names_a_version:
            self.store.refuse(
                Refused(checked.name, checked.version, checked.refusal.message, checked.parsed)
            )
