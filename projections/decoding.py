"""Turn consumed records into log events or definition records; anything else is poison."""

from __future__ import annotations

from dataclasses import dataclass

from confluent_kafka import Message

from kflow.bus.contracts import Contracts
from kflow.bus.errors import DecodeError
from kflow.bus.reader import RawRecord
from kflow.bus.topics import TopicNames
from kflow.core.events import Event
from kflow.projections.log_event import DEFAULT_TENANT, DefinitionRecord, LogEvent


@dataclass(frozen=True)
class Poison:
    """Why a record cannot be projected (goes to the DLQ; the partition moves on)."""

    reason: str
    error_type: str
    message: str


class Decoder:
    """Decodes records of one prefix's events and definitions topics (called per record)."""

    def __init__(self, contracts: Contracts, topics: TopicNames) -> None:
        self.contracts = contracts
        self._definitions = topics.definitions
        self._envelope = contracts.decode_envelope

    def __call__(self, msg: Message) -> LogEvent | DefinitionRecord | Poison:
        ts = msg.timestamp()[1]
        return self.decode(
            str(msg.topic()), int(msg.partition() or 0), int(msg.offset() or 0),
            msg.key(), msg.value(), ts,
        )  # fmt: skip

    def record(self, record: RawRecord) -> LogEvent | DefinitionRecord | Poison:
        """Decode a record read with :class:`kflow.bus.reader.TopicReader`."""
        return self.decode(
            record.topic, record.partition, record.offset,
            record.key, record.value, record.timestamp_ms,
        )  # fmt: skip

    def decode(
        self,
        topic: str,
        partition: int,
        offset: int,
        key: str | bytes | None,
        raw: str | bytes | None,
        timestamp_ms: int,
    ) -> LogEvent | DefinitionRecord | Poison:
        """Decode one record given by its parts."""
        if topic == self._definitions:
            return _definition(key, self.contracts, topic, partition, offset, raw)
        if not isinstance(raw, bytes):
            return Poison("empty", "EmptyRecord", "an events record has no value")
        try:
            env = self._envelope(raw)
        except DecodeError as e:
            return Poison(e.reason.value, "DecodeError", e.detail)
        body = env.body
        if not isinstance(body, Event):
            return Poison("wrong_type", "DecodeError", f"{env.type} is not an event")
        return LogEvent(
            topic,
            partition,
            offset,
            body,
            env.event_id,
            env.tenant or DEFAULT_TENANT,
            env.actor,
            timestamp_ms if timestamp_ms > 0 else env.occurred_at,
        )


def _definition(
    key: str | bytes | None,
    contracts: Contracts,
    topic: str,
    partition: int,
    offset: int,
    raw: object,
) -> DefinitionRecord | Poison:
    key_text = key.decode("utf-8", "replace") if isinstance(key, bytes) else str(key or "")
    if raw is None:  # tombstone: the definition was removed
        name, _, version = key_text.rpartition("@")
        if not name or not version.isdigit():
            return Poison("malformed", "BadKey", f"definition tombstone key {key_text!r}")
        return DefinitionRecord(topic, partition, offset, name, int(version), None)
    if not isinstance(raw, bytes):
        return Poison("malformed", "DecodeError", "definition record value is not bytes")
    try:
        rec = contracts.decode_definition(raw)
    except DecodeError as e:
        return Poison(e.reason.value, "DecodeError", e.detail)
    return DefinitionRecord(topic, partition, offset, rec.name, rec.version, rec.definition)
