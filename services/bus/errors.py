"""Errors raised by the Kafka bus: one root, short classes, a reason on decode failures."""

from __future__ import annotations

from enum import StrEnum

from confluent_kafka import KafkaError

from kflow.core.errors import KflowError


class BusError(KflowError):
    """Root of every error raised by ``kflow.bus``."""


class SchemaError(BusError):
    """An ``.avsc`` file or schema directory is invalid (names the file and the problem)."""


class EncodeError(BusError):
    """A record does not fit its Avro schema; the message names the record and the field."""


class DecodeFailure(StrEnum):
    """Why bytes could not be decoded; stable strings, used as the DLQ ``reason``."""

    NOT_SINGLE_OBJECT = "not_single_object"
    """The bytes do not start with the Avro single-object marker 0xC3 0x01."""
    TRUNCATED = "truncated"
    """The bytes end before the header or the record is complete."""
    UNKNOWN_FINGERPRINT = "unknown_fingerprint"
    """No current or released schema has the writer fingerprint in the header."""
    MALFORMED = "malformed"
    """The body is not a valid Avro encoding of the writer schema."""
    INCOMPATIBLE = "incompatible"
    """The writer schema cannot be resolved to the reader schema."""
    WRONG_TYPE = "wrong_type"
    """The record decoded, but is not the type the caller expected."""


class DecodeError(BusError):
    """Bytes could not be turned into a record; ``reason`` says why."""

    def __init__(self, reason: DecodeFailure, detail: str) -> None:
        super().__init__(f"{reason.value}: {detail}")
        self.reason = reason
        self.detail = detail


class RetryableError(BusError):
    """Raised by a handler to abort the batch and process it again (e.g. a store is down).

    Any other exception from a handler is treated as non-retryable: the record
    goes to the dead-letter topic and the partition moves on.
    """


class TransactionError(BusError):
    """The exactly-once loop could not initialise or complete a Kafka transaction."""


class RecordTooLarge(BusError):
    """An output record is over the record limit; refused before ``produce`` (ADR 0027)."""

    def __init__(self, topic: str, size: int, limit: int, detail: str = "") -> None:
        super().__init__(
            f"a {size}-byte record for {topic} is over the {limit}-byte record limit"
            f" (topic max.message.bytes less framing){detail}"
        )
        self.topic = topic
        self.size = size
        self.limit = limit


class FatalClientError(BusError):
    """A Kafka client hit a fatal error (e.g. a static member fenced by another process with
    the same ``group.instance.id``, or a fenced producer): it can do nothing more. The owner
    recreates the client or exits non-zero so that a supervisor restarts the process."""


def is_fatal(error: KafkaError) -> bool:
    """Whether ``error`` leaves its client unusable.

    librdkafka hands a consumer's fatal error to ``poll()`` as an ``_FATAL`` message error
    whose ``fatal()`` is False (confluent-kafka 2.x), so the code is checked too.
    """
    return bool(error.fatal()) or error.code() == KafkaError._FATAL
