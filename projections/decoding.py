"""Turn consumed records into log events or definition records; anything else is poison.

Definitions are checked with ``kflow.registry.checked``: a refused one removes its version
(a ``DefinitionRecord`` without definition) and carries why, for the dead letter.
"""

from __future__ import annotations

from confluent_kafka import Message

from kflow.bus.contracts import Contracts
from kflow.bus.errors import DecodeError, DecodeFailure
from kflow.bus.message import key_text
from kflow.bus.reader import RawRecord
from kflow.bus.topics import TopicNames
from kflow.core.events import Event
from kflow.projections.log_event import DEFAULT_TENANT, DefinitionRecord, LogEvent, Poison
from kflow.registry.checked import check_record


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
            reason = DecodeFailure.TRUNCATED
            return Poison.of(reason.value, DecodeError(reason, "an events record has no value"))
        try:
            env = self._envelope(raw)
        except DecodeError as e:
            return Poison.of(e.reason.value, e)
        body = env.body
        if not isinstance(body, Event):
            reason = DecodeFailure.WRONG_TYPE
            return Poison.of(reason.value, DecodeError(reason, f"{env.type} is not an event"))
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
    raw: str | bytes | None,
) -> DefinitionRecord | Poison:
    checked = check_record(key_text(key), raw.encode() if isinstance(raw, str) else raw, contracts)
    if checked.definition is not None:
        return DefinitionRecord(
            topic, partition, offset, checked.name, checked.version, checked.document
        )
    refusal = checked.refusal  # None: a tombstone, the version was removed
    poison = (
        None if refusal is None else Poison(refusal.reason, refusal.error_type, refusal.message)
    )
    if poison is not None and not checked.names_a_version:
        return poison  # replaces nothing: only the dead letter
    return DefinitionRecord(topic, partition, offset, checked.name, checked.version, None, poison)
