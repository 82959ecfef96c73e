"""The outbox table and the helper that writes to it inside the caller's transaction.

A service that changes its own rows and wants a workflow started calls
:func:`enqueue_start` on the connection of its open transaction. The row commits
or rolls back with the business change; ``kflow run relay`` publishes committed
rows as ``StartWorkflow`` commands. The table lives in the connection's
``search_path`` (normally ``public``); an insert trigger wakes the relay with
``NOTIFY kflow_outbox``.
"""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg.pq import TransactionStatus

from kflow.core.limits import DEFAULT_LIMITS
from kflow.observability.tracing import current_traceparent
from kflow.relay.errors import OutboxInputError

TABLE = "kflow_outbox"
CHANNEL = "kflow_outbox"
"""The ``LISTEN``/``NOTIFY`` channel the insert trigger signals."""

# Same rules as the HTTP API's start request, so a start means the same from every door.
WORKFLOW_ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:@-]{0,127}$")
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
MAX_LABEL_CHARS = 256
"""Longest ``tenant``, ``actor``, ``correlation_id`` or ``idempotency_key``."""

_INSTALL_LOCK = 0x6B666C6F77  # "kflow": serialises concurrent installs (CREATE IF NOT EXISTS races)

DDL = f"""
CREATE TABLE IF NOT EXISTS {TABLE} (
    id              bigserial PRIMARY KEY,
    event_id        uuid NOT NULL DEFAULT gen_random_uuid(),
    workflow_id     text NOT NULL CHECK (workflow_id <> ''),
    name            text NOT NULL CHECK (name <> ''),
    version         integer NOT NULL DEFAULT 0 CHECK (version >= 0),
    input           jsonb,
    tenant          text,
    actor           text,
    correlation_id  text,
    idempotency_key text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    published_at    timestamptz,
    attempts        integer NOT NULL DEFAULT 0,
    last_error      text,
    failed_at       timestamptz,
    traceparent     text
);
-- tables installed before tracing (ADR 0037) gain the column
ALTER TABLE {TABLE} ADD COLUMN IF NOT EXISTS traceparent text;
COMMENT ON TABLE {TABLE} IS
    'kflow transactional outbox: StartWorkflow commands published by kflow run relay';
COMMENT ON COLUMN {TABLE}.version IS '0 = the latest registered version';
COMMENT ON COLUMN {TABLE}.traceparent IS
    'W3C trace context of the span that wrote the row; the relay sends it on';
COMMENT ON COLUMN {TABLE}.failed_at IS
    'set when the row can never be published (reason in last_error); kflow outbox retry';
CREATE INDEX IF NOT EXISTS {TABLE}_unpublished
    ON {TABLE} (id) WHERE published_at IS NULL AND failed_at IS NULL;
CREATE INDEX IF NOT EXISTS {TABLE}_failed
    ON {TABLE} (id) WHERE failed_at IS NOT NULL;
CREATE INDEX IF NOT EXISTS {TABLE}_published_at
    ON {TABLE} (published_at) WHERE published_at IS NOT NULL;
CREATE OR REPLACE FUNCTION {TABLE}_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('{CHANNEL}', '');
    RETURN NULL;
END
$$;
CREATE OR REPLACE TRIGGER {TABLE}_inserted
    AFTER INSERT ON {TABLE} FOR EACH STATEMENT EXECUTE FUNCTION {TABLE}_notify();
"""


def dsn_location(dsn: str) -> str:
    """``host:port/dbname`` of a DSN, without its password: for messages and logs."""
    try:
        parts = psycopg.conninfo.conninfo_to_dict(dsn)
    except psycopg.ProgrammingError:
        return "<unparsable DSN>"
    return f"{parts.get('host', 'localhost')}:{parts.get('port', 5432)}/{parts.get('dbname', '')}"


def install(conn: psycopg.Connection[Any]) -> None:
    """Create the outbox table, its indexes and the NOTIFY trigger (idempotent; commits)."""
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_INSTALL_LOCK,))
        conn.execute(DDL.encode())


def default_idempotency_key(workflow_id: str) -> str:
    """The idempotency key of a start with no explicit key: stable per workflow id."""
    return f"start:{workflow_id}"


def input_json(value: Any, max_payload_bytes: int, field: str = "input") -> str:
    """``value`` as compact JSON text, or :class:`OutboxInputError` naming what is wrong."""
    try:
        text = json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError) as e:
        raise OutboxInputError(
            field, f"not a JSON document ({e})", "pass dicts, lists, str, int, finite float, bool"
        ) from e
    if "\\u0000" in text:
        raise OutboxInputError(
            field, "contains a NUL character (\\u0000)", "PostgreSQL jsonb cannot store it; drop it"
        )
    size = len(text.encode())
    if size > max_payload_bytes:
        raise OutboxInputError(
            field,
            f"{size} bytes of JSON, over the limit of {max_payload_bytes}",
            "store large data elsewhere and pass a reference (URL or id) in the input",
        )
    return text


def _check_text(field: str, value: str | None, pattern: re.Pattern[str] | None = None) -> None:
    if value is None:
        return
    if not isinstance(value, str):
        raise OutboxInputError(field, f"is {type(value).__name__}", "pass a str or None")
    if pattern is not None and not pattern.fullmatch(value):
        raise OutboxInputError(
            field, f"{value[:80]!r} is not allowed", f"use text matching {pattern.pattern}"
        )
    if len(value) > MAX_LABEL_CHARS:
        raise OutboxInputError(
            field, f"{len(value)} characters", f"use at most {MAX_LABEL_CHARS} characters"
        )


INSERT_SQL = (
    f"INSERT INTO {TABLE} (workflow_id, name, version, input, tenant, actor,"
    " correlation_id, idempotency_key) VALUES (%s, %s, %s, %s::jsonb, %s, %s, %s, %s)"
)
TRACED_INSERT_SQL = (
    f"INSERT INTO {TABLE} (workflow_id, name, version, input, tenant, actor,"
    " correlation_id, idempotency_key, traceparent)"
    " VALUES (%s, %s, %s, %s::jsonb, %s, %s, %s, %s, %s)"
)
"""Used when the writer has a current span, so tables installed before tracing keep working
for writers that do not trace."""
_OLD_TABLE = OutboxInputError(
    "conn",
    f"its {TABLE} table has no traceparent column (installed before tracing)",
    "run `kflow outbox install` once more: it adds the column",
)


def _insert(params: tuple[Any, ...]) -> tuple[str, tuple[Any, ...]]:
    """The INSERT and its parameters, with the caller's trace context when it has one."""
    traceparent = current_traceparent()
    if traceparent is None:
        return INSERT_SQL, params
    return TRACED_INSERT_SQL, (*params, traceparent)


def _not_in_transaction(autocommit: bool, status: TransactionStatus) -> OutboxInputError | None:
    if autocommit and status == TransactionStatus.IDLE:
        return OutboxInputError(
            "conn",
            "is in autocommit mode outside a transaction, so the row would commit on its own",
            "call it inside `with conn.transaction():` together with your business writes",
        )
    return None


def start_row_params(
    *,
    name: str,
    input: Any,
    version: int,
    workflow_id: str | None,
    tenant: str | None,
    actor: str | None,
    correlation_id: str | None,
    idempotency_key: str | None,
    max_payload_bytes: int,
) -> tuple[str, str, int, str, str | None, str | None, str | None, str]:
    """Validated :data:`INSERT_SQL` parameters (workflow id first); raises OutboxInputError."""
    _check_text("name", name, NAME_PATTERN)
    if not name:
        raise OutboxInputError("name", "is empty", "pass a registered definition name")
    if isinstance(version, bool) or not isinstance(version, int) or not 0 <= version <= 1_000_000:
        raise OutboxInputError("version", f"{version!r} is not allowed", "use 0 (latest) or >= 1")
    wid = workflow_id if workflow_id is not None else str(uuid.uuid4())
    _check_text("workflow_id", wid, WORKFLOW_ID_PATTERN)
    for field, value in (
        ("tenant", tenant),
        ("actor", actor),
        ("correlation_id", correlation_id),
        ("idempotency_key", idempotency_key),
    ):
        _check_text(field, value)
    text = input_json(input, max_payload_bytes)
    key = idempotency_key or default_idempotency_key(wid)
    return (wid, name, version, text, tenant, actor, correlation_id, key)


def enqueue_start(
    conn: psycopg.Connection[Any],
    *,
    name: str,
    input: Any = None,
    version: int = 0,
    workflow_id: str | None = None,
    tenant: str | None = None,
    actor: str | None = None,
    correlation_id: str | None = None,
    idempotency_key: str | None = None,
    max_payload_bytes: int = DEFAULT_LIMITS.max_payload_bytes,
) -> str:
    """Add a StartWorkflow to the outbox in the caller's open transaction; return the workflow id.

    Never commits: the row is published only if the caller's transaction commits.
    ``version=0`` starts the latest registered version. ``workflow_id`` defaults to
    a new UUID; give your own (e.g. derived from your business key) so a retried
    business transaction cannot start the workflow twice.
    Raises :class:`OutboxInputError` for bad arguments, before touching the database.
    """
    error = _not_in_transaction(conn.autocommit, conn.info.transaction_status)
    if error is not None:
        raise error
    params = start_row_params(
        name=name,
        input=input,
        version=version,
        workflow_id=workflow_id,
        tenant=tenant,
        actor=actor,
        correlation_id=correlation_id,
        idempotency_key=idempotency_key,
        max_payload_bytes=max_payload_bytes,
    )
    try:
        conn.execute(*_insert(params))
    except psycopg.errors.UndefinedColumn as e:
        raise _OLD_TABLE from e
    return params[0]


async def enqueue_start_async(
    conn: psycopg.AsyncConnection[Any],
    *,
    name: str,
    input: Any = None,
    version: int = 0,
    workflow_id: str | None = None,
    tenant: str | None = None,
    actor: str | None = None,
    correlation_id: str | None = None,
    idempotency_key: str | None = None,
    max_payload_bytes: int = DEFAULT_LIMITS.max_payload_bytes,
) -> str:
    """:func:`enqueue_start` for an ``AsyncConnection`` (e.g. in a FastAPI handler)."""
    error = _not_in_transaction(conn.autocommit, conn.info.transaction_status)
    if error is not None:
        raise error
    params = start_row_params(
        name=name,
        input=input,
        version=version,
        workflow_id=workflow_id,
        tenant=tenant,
        actor=actor,
        correlation_id=correlation_id,
        idempotency_key=idempotency_key,
        max_payload_bytes=max_payload_bytes,
    )
    try:
        await conn.execute(*_insert(params))
    except psycopg.errors.UndefinedColumn as e:
        raise _OLD_TABLE from e
    return params[0]


@dataclass(frozen=True, slots=True)
class OutboxStats:
    """Row counts of the outbox and the age of its oldest unpublished row."""

    pending: int
    failed: int
    published: int
    """``-1`` when not counted (:func:`pending_backlog` skips the published rows)."""
    oldest_pending_age_s: float


_PENDING = "published_at IS NULL AND failed_at IS NULL"


def pending_backlog(conn: psycopg.Connection[Any]) -> OutboxStats:
    """Pending and failed counts and the lag, from the partial indexes' rows only (cheap)."""
    row = conn.execute(
        f"""SELECT
              (SELECT count(*) FROM {TABLE} WHERE {_PENDING}),
              (SELECT count(*) FROM {TABLE} WHERE failed_at IS NOT NULL),
              coalesce((SELECT extract(epoch FROM clock_timestamp() - min(created_at))
                        FROM {TABLE} WHERE {_PENDING}), 0)::float8"""
    ).fetchone()
    assert row is not None  # scalar subqueries always give one row
    return OutboxStats(int(row[0]), int(row[1]), -1, float(row[2]))


def outbox_stats(conn: psycopg.Connection[Any]) -> OutboxStats:
    """Counts by state, published rows included (one scan of the table; for the CLI)."""
    backlog = pending_backlog(conn)
    row = conn.execute(f"SELECT count(*) FROM {TABLE} WHERE published_at IS NOT NULL").fetchone()
    assert row is not None
    return OutboxStats(backlog.pending, backlog.failed, int(row[0]), backlog.oldest_pending_age_s)


@dataclass(frozen=True, slots=True)
class FailedRow:
    """A row the relay gave up on, with the reason."""

    id: int
    workflow_id: str
    name: str
    reason: str


def failed_rows(conn: psycopg.Connection[Any], limit: int = 20) -> list[FailedRow]:
    """The oldest ``limit`` failed rows."""
    rows = conn.execute(
        f"SELECT id, workflow_id, name, coalesce(last_error, '') FROM {TABLE}"
        " WHERE failed_at IS NOT NULL ORDER BY id LIMIT %s",
        (limit,),
    ).fetchall()
    return [FailedRow(int(r[0]), str(r[1]), str(r[2]), str(r[3])) for r in rows]


def retry_failed(conn: psycopg.Connection[Any], ids: list[int] | None = None) -> int:
    """Make failed rows (all, or ``ids``) eligible again; returns how many (no commit)."""
    where = "failed_at IS NOT NULL" + (" AND id = ANY(%s)" if ids is not None else "")
    cur = conn.execute(
        f"UPDATE {TABLE} SET failed_at = NULL, attempts = 0 WHERE {where}",
        (ids,) if ids is not None else None,
    )
    return cur.rowcount


def has_trace_column(conn: psycopg.Connection[Any]) -> bool:
    """Whether the outbox table has the ``traceparent`` column (installed since ADR 0037)."""
    row = conn.execute(
        "SELECT EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = to_regclass(%s)"
        " AND attname = 'traceparent' AND NOT attisdropped)",
        (TABLE,),
    ).fetchone()
    return bool(row and row[0])


def is_installed(conn: psycopg.Connection[Any]) -> bool:
    """True when the outbox table is visible in the connection's ``search_path``."""
    row = conn.execute("SELECT to_regclass(%s) IS NOT NULL", (TABLE,)).fetchone()
    return bool(row and row[0])
