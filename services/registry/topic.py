"""Publish definitions to ``{prefix}.definitions`` and follow it into a :class:`DefinitionStore`."""

from __future__ import annotations

import logging
import time

from confluent_kafka import KafkaError

from kflow.bus.clients import make_producer
from kflow.bus.contracts import default_contracts
from kflow.bus.follower import TopicFollower
from kflow.bus.reader import RawRecord
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
        self._follower = TopicFollower(
            bootstrap, topic_names(prefix).definitions, self._apply, RegistryError
        )

    def catch_up(self, timeout_s: float = 30.0) -> None:
        """Read until the end of every partition (as of now)."""
        self._follower.catch_up(timeout_s)

    def start(self) -> None:
        """Follow new definitions on a daemon thread."""
        self._follower.start("definitions")

    def close(self) -> None:
        """Stop following and close the reader."""
        self._follower.close()

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
