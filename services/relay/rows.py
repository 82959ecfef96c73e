"""One claimed outbox row and its StartWorkflow record (pure: no I/O).

Every envelope field is taken from the row (event id, created time, keys), so
a row published twice produces byte-identical records.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from kflow.bus.contracts import encode_input
from kflow.bus.envelope import envelope_meta
from kflow.bus.errors import EncodeError
from kflow.bus.message import trace_headers
from kflow.bus.signing import Signer
from kflow.core.inputs import StartWorkflow
from kflow.core.jsondoc import Json
from kflow.relay.errors import OutboxInputError, RowRejected
from kflow.relay.outbox import (
    MAX_LABEL_CHARS,
    NAME_PATTERN,
    TABLE,
    WORKFLOW_ID_PATTERN,
    default_idempotency_key,
    input_json,
)

_CLAIM = """
SELECT id, event_id::text, workflow_id, name, version, input::text, tenant, actor,
       correlation_id, idempotency_key, created_at, {traceparent}
FROM {table}
WHERE published_at IS NULL AND failed_at IS NULL
ORDER BY id
LIMIT %s
FOR UPDATE SKIP LOCKED
"""
CLAIM_SQL = _CLAIM.format(table=TABLE, traceparent="traceparent")
UNTRACED_CLAIM_SQL = _CLAIM.format(table=TABLE, traceparent="NULL")
"""For an outbox table installed before it had the ``traceparent`` column."""


@dataclass(frozen=True, slots=True)
class OutboxRow:
    """The columns of an unpublished row the relay needs (``input`` as JSON text)."""

    id: int
    event_id: str
    workflow_id: str
    name: str
    version: int
    input_text: str | None
    tenant: str | None
    actor: str | None
    correlation_id: str | None
    idempotency_key: str | None
    created_at: datetime
    traceparent: str | None = None
    """Trace context of the span that wrote the row; the record's ``traceparent`` header."""

    @classmethod
    def from_tuple(cls, values: tuple[Any, ...]) -> OutboxRow:
        """Build from a :data:`CLAIM_SQL` result row."""
        return cls(*values)


@dataclass(frozen=True, slots=True)
class EncodedRow:
    """A row ready to produce: topic key, value and headers."""

    row: OutboxRow
    key: str
    value: bytes
    headers: dict[str, bytes]


def _rejected(field: str, problem: str) -> RowRejected:
    return RowRejected(f"{field}: {problem}")


def encode_row(row: OutboxRow, max_payload_bytes: int, signer: Signer | None = None) -> EncodedRow:
    """The StartWorkflow envelope of ``row``; :class:`RowRejected` says why it cannot be one.

    ``signer`` (the outbox owner's key) signs it; the orchestrator checks the row's tenant
    against that key's."""
    if not WORKFLOW_ID_PATTERN.fullmatch(row.workflow_id):
        raise _rejected("workflow_id", f"{row.workflow_id[:80]!r} is not a valid workflow id")
    if not NAME_PATTERN.fullmatch(row.name):
        raise _rejected("name", f"{row.name[:80]!r} is not a valid definition name")
    for field, value in (
        ("tenant", row.tenant),
        ("actor", row.actor),
        ("correlation_id", row.correlation_id),
        ("idempotency_key", row.idempotency_key),
    ):
        if value is not None and len(value) > MAX_LABEL_CHARS:
            raise _rejected(field, f"{len(value)} characters, over {MAX_LABEL_CHARS}")
    try:
        value = None if row.input_text is None else json.loads(row.input_text)
    except ValueError as e:  # e.g. an integer longer than Python's 4,300-digit limit
        raise _rejected("input", f"not readable as JSON in Python ({e})") from e
    # jsonb text has spaces after ':' and ',' and writes numbers in full, so compact JSON
    # is shorter except for rare float reprs (a few characters); below half the limit
    # the exact measure cannot fail.
    if row.input_text is not None and len(row.input_text.encode()) > max_payload_bytes // 2:
        try:
            input_json(value, max_payload_bytes)
        except OutboxInputError as e:
            raise RowRejected(str(e)) from e
    command = StartWorkflow(
        workflow_id=row.workflow_id,
        name=row.name,
        version=row.version,
        input=Json.of(value),
        tenant=row.tenant,
        actor=row.actor,
    )
    correlation_id = row.correlation_id or row.workflow_id
    meta = envelope_meta(
        command,
        event_id=row.event_id,
        occurred_at=int(row.created_at.timestamp() * 1000),
        correlation_id=correlation_id,
        actor=row.actor,
        tenant=row.tenant,
        idempotency_key=row.idempotency_key or default_idempotency_key(row.workflow_id),
    )
    try:
        encoded = encode_input(command, meta)
    except EncodeError as e:
        raise RowRejected(str(e)) from e
    headers = trace_headers(correlation_id=correlation_id, traceparent=row.traceparent)
    if signer is not None:
        headers.update(signer.headers(row.workflow_id, encoded))
    return EncodedRow(row, row.workflow_id, encoded, headers)
