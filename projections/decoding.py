"""Turn consumed records into log events or definition records; anything else is poison.

Poison is returned as the :class:`DecodeError` saying why (it goes to the DLQ, with
``kflow.bus.dead_letter``, and the partition moves on).
"""

from __future__ import annotations

from confluent_kafka import Message

from kflow.bus.contracts import Contracts
from kflow.bus.errors import DecodeError, DecodeFailure
from kflow.bus.topics import TopicNames
from kflow.core.events import Event
from kflow.projections.log_event import DEFAULT_TENANT, DefinitionRecord, LogEvent


class Decoder:
    """Decodes records of one prefix's events and definitions topics (called per record)."""

    def __init__(self, contracts: Contracts, topics: TopicNames) -> None:
        self.contracts = contracts
        self._definitions = topics.definitions
        self._envelope = contracts.decode_envelope

    def __call__(self, msg: Message) -> LogEvent | DefinitionRecord | DecodeError:
        topic = str(msg.topic())
        partition = int(msg.partition() or 0)
        offset = int(msg.offset() or 0)
        raw = msg.value()
        if topic == self._definitions:
            return _definition(msg, self.contracts, topic, partition, offset, raw)
        if not isinstance(raw, bytes):
            return DecodeError(DecodeFailure.TRUNCATED, "an events record has no value")
        try:
            env = self._envelope(raw)
        except DecodeError as e:
            return e
        body = env.body
        if not isinstance(body, Event):
            return DecodeError(DecodeFailure.WRONG_TYPE, f"{env.type} is not an event")
        ts = msg.timestamp()[1]
        return LogEvent(
            topic,
            partition,
            offset,
            body,
            env.event_id,
            env.tenant or DEFAULT_TENANT,
            env.actor,
            ts if ts > 0 else env.occurred_at,
        )


def decode_message(
    msg: Message, contracts: Contracts, topics: TopicNames
) -> LogEvent | DefinitionRecord | DecodeError:
    """Decode one record of the events or definitions topic."""
    return Decoder(contracts, topics)(msg)


def _definition(
    msg: Message, contracts: Contracts, topic: str, partition: int, offset: int, raw: object
) -> DefinitionRecord | DecodeError:
    key = msg.key()
    key_text = key.decode("utf-8", "replace") if isinstance(key, bytes) else str(key or "")
    if raw is None:  # tombstone: the definition was removed
        name, _, version = key_text.rpartition("@")
        if not name or not version.isdigit():
            return DecodeError(
                DecodeFailure.MALFORMED,
                f"definition tombstone key {key_text!r} is not name@version",
            )
        return DefinitionRecord(topic, partition, offset, name, int(version), None)
    if not isinstance(raw, bytes):
        return DecodeError(DecodeFailure.MALFORMED, "definition record value is not bytes")
    try:
        rec = contracts.decode_definition(raw)
    except DecodeError as e:
        return e
    return DefinitionRecord(topic, partition, offset, rec.name, rec.version, rec.definition)
