"""Size limits kflow enforces; the one place every record, topic and producer limit comes from.

Pure: adapters read these (topic ``max.message.bytes``, producer ``message.max.bytes``,
the exactly-once loop's size check) instead of defining their own numbers (ADR 0027).
"""

from __future__ import annotations

from dataclasses import dataclass

MAX_RECORD_BYTES = 4 * 1024 * 1024
"""Largest record batch a kflow topic accepts (topic ``max.message.bytes``) and largest
request a kflow producer sends (librdkafka ``message.max.bytes``): the same number, so a
record the producer accepts is never refused by the broker for its size."""
RECORD_FRAMING_BYTES = 64 * 1024
"""Room left under :data:`MAX_RECORD_BYTES` for the record batch and request framing."""
MAX_OUTPUT_RECORD_BYTES = MAX_RECORD_BYTES - RECORD_FRAMING_BYTES
"""Largest key + value + headers kflow produces; a larger output is refused before
``produce`` (its input goes to the DLQ, reason ``output_too_large``)."""
MAX_PAYLOAD_CEILING = MAX_OUTPUT_RECORD_BYTES // 3
"""Highest allowed ``max_payload_bytes``: an event may hold a payload and the step's input
that made it, plus the envelope, and still fit one record."""
NOTICE_FIELD_BYTES = 1024
"""A notice (seq 0) records a document or text of its cause only up to this size; larger
ones are elided and their size noted, so a refused input never makes a large notice."""
MAX_MESSAGE_CHARS = 2000
"""Longest error message kept on an event; longer ones are cut (ends with ``...``)."""
MAX_IDEMPOTENCY_KEY_CHARS = 256
"""Longest idempotency key a command may carry (the outbox's label limit too); a command
with a longer one is refused, so the keys a workflow remembers stay small (ADR 0018)."""


@dataclass(frozen=True, slots=True)
class Limits:
    """Upper bounds; exceeding one gives a clear error, never a crash."""

    max_nodes: int = 10_000
    """Nodes per definition."""
    max_payload_bytes: int = 1_000_000
    """JSON size of a workflow input, a step output, a signal payload, heartbeat details
    or a node's literal input (at most :data:`MAX_PAYLOAD_CEILING`)."""
    max_map_items: int = 10_000
    """Children of one ``for_each`` node."""

    def __post_init__(self) -> None:
        if not 0 < self.max_payload_bytes <= MAX_PAYLOAD_CEILING:
            raise ValueError(
                f"max_payload_bytes={self.max_payload_bytes} must be between 1 and "
                f"{MAX_PAYLOAD_CEILING} (a third of the {MAX_OUTPUT_RECORD_BYTES}-byte record "
                "limit, so an event holding the payload still fits one Kafka record)"
            )


DEFAULT_LIMITS = Limits()
