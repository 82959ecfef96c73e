"""Dead letters: a record the bus could not process, kept with why and where it came from."""

from __future__ import annotations

from dataclasses import dataclass, replace

from confluent_kafka import Message

from kflow.bus.codec import AvroCodec
from kflow.bus.message import OutRecord, header_map, key_text
from kflow.core.limits import MAX_MESSAGE_CHARS, MAX_OUTPUT_RECORD_BYTES

DEAD_LETTER_SCHEMA = "kflow.DeadLetter"
HANDLER_ERROR = "handler_error"
"""The ``reason`` of a record whose handler raised a non-retryable error."""
UNPROJECTABLE = "unprojectable"
"""The ``reason`` of an event a projection cannot store (a value its store refuses, such as
an integer over 64 bits for orjson); the rest of its batch is projected."""


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A poison record: original key, bytes and headers, its coordinates, the reason and error
    type."""

    original_key: str | None
    original_value: bytes | None
    topic: str
    partition: int
    offset: int
    reason: str
    error_type: str
    message: str
    at: int
    original_headers: dict[str, bytes] | None = None
    """The original headers (``kflow-signature``, ``traceparent``...); None: it had none, or
    the letter was written before they were kept (ADR 0083)."""


def dead_letter_for(
    message: Message,
    raw: str | bytes | None,
    reason: str,
    error: Exception | tuple[str, str],
    at: int,
) -> DeadLetter:
    """The dead letter of a consumed ``message`` whose bytes ``raw`` failed with ``error``.

    ``error`` is the exception, or its ``(error_type, message)`` when it was recorded earlier.
    """
    error_type, text = error if isinstance(error, tuple) else (type(error).__name__, str(error))
    if len(text) > MAX_MESSAGE_CHARS:  # an error text may quote the record: keep it short
        text = f"{text[: MAX_MESSAGE_CHARS - 3]}..."
    return DeadLetter(
        original_key=key_text(message.key()),
        original_value=raw.encode() if isinstance(raw, str) else raw,
        topic=message.topic() or "",
        partition=message.partition() or 0,
        offset=message.offset() or 0,
        reason=reason,
        error_type=error_type,
        message=text,
        at=at,
        original_headers=header_map(message) or None,
    )


def encode_dead_letter(letter: DeadLetter, codec: AvroCodec) -> bytes:
    """Single-object Avro bytes of ``letter``."""
    return codec.encode(
        DEAD_LETTER_SCHEMA,
        {
            "original_key": letter.original_key,
            "original_value": letter.original_value,
            "topic": letter.topic,
            "partition": letter.partition,
            "offset": letter.offset,
            "reason": letter.reason,
            "error_type": letter.error_type,
            "message": letter.message,
            "at": letter.at,
            "original_headers": letter.original_headers,
        },
    )


def decode_dead_letter(data: bytes, codec: AvroCodec) -> DeadLetter:
    """The dead letter in ``data`` (raises ``DecodeError`` if it is not one)."""
    _, record = codec.decode(data, expected=DEAD_LETTER_SCHEMA)
    return DeadLetter(**record)


def dead_letter_record(
    letter: DeadLetter,
    dlq_topic: str,
    codec: AvroCodec,
    max_bytes: int = MAX_OUTPUT_RECORD_BYTES,
) -> OutRecord:
    """The record to produce to ``dlq_topic``, keyed by the original key.

    An original too large to fit one record with the letter around it (it came from a
    topic with the same limit) is cut to its first bytes, and ``message`` says so.
    """
    value = encode_dead_letter(letter, codec)
    key_bytes = len(letter.original_key.encode()) if letter.original_key else 0
    original = letter.original_value
    if len(value) + key_bytes > max_bytes and original:
        note = f" [original_value cut to its first {{}} of {len(original)} bytes to fit the DLQ]"
        keep = max(0, max_bytes - key_bytes - (len(value) - len(original)) - len(note) - 64)
        cut = replace(
            letter, original_value=original[:keep], message=letter.message + note.format(keep)
        )
        value = encode_dead_letter(cut, codec)
    return OutRecord(dlq_topic, letter.original_key, value)
