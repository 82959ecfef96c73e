"""Pure mapping between the core's read-model views and table rows (no I/O).

The rows are the core's ``WorkflowSummary`` and ``StepView`` (folded by
``kflow.core.views``), stored column for column, so the read model equals
the fold of the log by construction and a rebuild gives the same rows.

Rows are COPY-ready for ``kflow.projections.pgcopy``: timestamps stay epoch milliseconds
and JSON documents are UTF-8 JSON text (bytes), so no ``datetime`` or ``str`` is
made per value; the ``*_COL_TYPES`` tuples name each column's PostgreSQL type.
Documents are written as the text the event carries, never parsed or re-encoded here
(ADR 0026), into ``json`` columns, which keep it byte for byte.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from kflow.core.events import Event, event_to_dict
from kflow.core.jsondoc import NULL, Json, dumps_bytes, json_default
from kflow.core.views import StepView, WorkflowSummary
from kflow.projections.errors import UnwritableValue
from kflow.projections.log_event import DEFAULT_TENANT, LogEvent

Row = tuple[Any, ...]
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

EXECUTION_COLS = (
    "workflow_id, tenant, name, version, status, input, output, reason, actor,"
    " created_at, updated_at, finished_at, last_seq"
)
STEP_COLS = (
    "workflow_id, step_key, node_id, step_index, status, attempts, node_type, queue, input,"
    " output, error_class, error_type, message, scheduled_at, finished_at, heartbeat_at,"
    " updated_seq"
)
EVENT_COLS = (
    "workflow_id, seq, type, at, tenant, event_id, actor, body, kafka_partition, kafka_offset"
)
EXECUTION_COL_TYPES = (
    "text", "text", "text", "int4", "text", "json", "json", "text", "text",
    "timestamptz", "timestamptz", "timestamptz", "int8",
)  # fmt: skip
STEP_COL_TYPES = (
    "text", "text", "text", "int4", "text", "int4", "text", "text", "json",
    "json", "text", "text", "text", "timestamptz", "timestamptz", "timestamptz", "int8",
)  # fmt: skip
EVENT_COL_TYPES = (
    "text", "int8", "text", "timestamptz", "text", "text", "text", "json", "int4", "int8",
)  # fmt: skip


def json_bytes(value: Any) -> bytes:
    """Compact JSON text as UTF-8 bytes (what a JSON column of a COPY-ready row holds).

    Raises :class:`UnwritableValue` for a value no JSON text can hold (documents are
    carried as text and never re-serialised; this is for the other fields).
    """
    try:
        return dumps_bytes(value)
    except (TypeError, ValueError) as e:
        raise _unwritable(e) from e


def _json_or_null(document: Json) -> bytes | None:
    """The document's text (SQL NULL for the ``null`` document, as the views hold no value)."""
    return None if document is NULL else document.text.encode()


def _unwritable(e: Exception) -> UnwritableValue:
    return UnwritableValue(f"a value cannot be written as JSON: {e}")


def ms_to_datetime(ms: int | None) -> datetime | None:
    """Epoch milliseconds as an exact UTC datetime (no float rounding)."""
    return None if ms is None else _EPOCH + timedelta(milliseconds=ms)


def datetime_to_ms(at: datetime | None) -> int | None:
    """Inverse of :func:`ms_to_datetime`."""
    return None if at is None else (at - _EPOCH) // timedelta(milliseconds=1)


def execution_row(s: WorkflowSummary, input_json: bytes | None, updated_at_ms: int) -> Row:
    """One ``executions`` row (``input_json`` is only known from ``WorkflowStarted``)."""
    return (
        s.workflow_id,
        s.tenant or DEFAULT_TENANT,
        s.name,
        s.version,
        s.status,
        input_json,
        _json_or_null(s.output),
        s.reason,
        s.actor,
        s.started_at,
        updated_at_ms,
        s.finished_at,
        s.seq,
    )


def summary_from_row(row: Row) -> WorkflowSummary:
    """The summary stored by :func:`execution_row` (columns in ``EXECUTION_COLS`` order)."""
    wf, tenant, name, version, status, _input, output, reason, actor, created, _upd, fin, seq = row
    return WorkflowSummary(
        workflow_id=wf, name=name, version=version, status=status, seq=seq,
        started_at=datetime_to_ms(created) or 0, finished_at=datetime_to_ms(fin),
        reason=reason, output=Json.of(output), tenant=tenant,
        actor=actor,
    )  # fmt: skip


def step_row(v: StepView) -> Row:
    """One ``steps`` row."""
    return (
        v.workflow_id,
        v.step_key,
        v.node_id,
        v.index,
        v.status,
        v.attempt,
        v.node_type,
        v.queue,
        _json_or_null(v.input),
        _json_or_null(v.output),
        v.error_class,
        v.error_type,
        v.message,
        v.scheduled_at,
        v.finished_at,
        v.heartbeat_at,
        v.seq,
    )


def step_from_row(row: Row) -> StepView:
    """The step view stored by :func:`step_row` (columns in ``STEP_COLS`` order)."""
    (wf, key, node, index, status, attempt, node_type, queue, inp, out, ecls, etype, msg,
     sched, fin, hb, seq) = row  # fmt: skip
    return StepView(
        workflow_id=wf, step_key=key, node_id=node, index=index, status=status, attempt=attempt,
        node_type=node_type, queue=queue, input=Json.of(inp), output=Json.of(out), error_class=ecls,
        error_type=etype, message=msg, scheduled_at=datetime_to_ms(sched),
        finished_at=datetime_to_ms(fin), heartbeat_at=datetime_to_ms(hb), seq=seq,
    )  # fmt: skip


def event_body(le: LogEvent) -> dict[str, Any]:
    """The event as the core's dict (what ``/events`` and the stream show)."""
    return event_to_dict(le.event)


def event_json(event: Event) -> bytes:
    """``event_to_dict(event)`` as JSON text, without building the dict.

    orjson writes a dataclass as an object of its fields in declaration order, which
    is exactly ``event_to_dict`` minus its leading ``"type"`` key (every event has a
    ``workflow_id``, so the object is never empty); documents go in as their text.
    """
    try:
        body = orjson.dumps(event, default=json_default)
    except TypeError as e:  # e.g. an integer over 64 bits in a cause or a definition
        raise _unwritable(e) from e
    return b'{"type":"' + type(event).__name__.encode() + b'",' + body[1:]


def event_row(le: LogEvent) -> Row:
    """One ``events`` row."""
    ev = le.event
    return (
        ev.workflow_id,
        ev.seq,
        type(ev).__name__,
        ev.at,
        le.tenant,
        le.event_id,
        le.actor,
        event_json(ev),
        le.partition,
        le.offset,
    )
