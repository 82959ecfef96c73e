"""Read-model queries (parameterised SQL only) and row-to-model mapping."""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg

from kflow.api.models import EventView, StepView, WorkflowDetail, WorkflowSummary
from kflow.api.problems import Problem

AConn = psycopg.AsyncConnection[tuple[object, ...]]

_SUMMARY_COLS = (
    "workflow_id, tenant, name, version, status, created_at, updated_at, finished_at, last_seq"
)


@dataclass(frozen=True)
class ListFilter:
    """Filters of ``GET /workflows`` (tenant is always the caller's)."""

    tenant: str
    status: str | None = None
    name: str | None = None
    created_after: datetime | None = None
    created_before: datetime | None = None
    limit: int = 50
    cursor: str | None = None
    id_contains: str | None = None
    """Only ids containing this text (exact case, as ids are; ``%`` and ``_`` match themselves).
    Case-sensitive ``LIKE`` scans 100,000 ids in ~30 ms where ``ILIKE`` took ~150 ms."""


def links(workflow_id: str) -> dict[str, str]:
    """Where to read and follow an execution."""
    base = f"/workflows/{workflow_id}"
    return {"self": base, "events": f"{base}/events", "stream": f"{base}/stream"}


def encode_cursor(created_at: datetime, workflow_id: str) -> str:
    raw = f"{created_at.isoformat()}|{workflow_id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    """The keyset position in ``cursor``; a 400 problem if it was not made by us."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        stamp, _, wf = raw.partition("|")
        at = datetime.fromisoformat(stamp)
        if not wf or at.tzinfo is None:
            raise ValueError("incomplete")
        return at, wf
    except (ValueError, UnicodeDecodeError, binascii.Error) as e:
        raise Problem(
            400, "invalid-cursor", "Invalid cursor",
            "cursor: pass the next_cursor value of a previous page unchanged",
        ) from e  # fmt: skip


def contains_pattern(text: str | None) -> str | None:
    """The LIKE pattern of ``ListFilter.id_contains`` (None when there is no text)."""
    if not text:
        return None
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def _summary(row: tuple[Any, ...]) -> WorkflowSummary:
    return WorkflowSummary(
        workflow_id=row[0], tenant=row[1], name=row[2], version=row[3], status=row[4],
        created_at=row[5], updated_at=row[6], finished_at=row[7], last_seq=row[8],
    )  # fmt: skip


def filter_clauses(f: ListFilter) -> tuple[list[str], list[Any]]:
    """The WHERE clauses (joined with AND) and their arguments that select ``f``'s executions
    (the cursor aside): the list page and bulk actions select the same runs."""
    where = ["tenant = %s"]
    args: list[Any] = [f.tenant]
    for clause, value in (
        ("status = %s", f.status),
        ("name = %s", f.name),
        ("created_at >= %s", f.created_after),
        ("created_at < %s", f.created_before),
        ("workflow_id LIKE %s", contains_pattern(f.id_contains)),
    ):
        if value is not None:
            where.append(clause)
            args.append(value)
    return where, args


async def list_workflows(conn: AConn, f: ListFilter) -> tuple[list[WorkflowSummary], str | None]:
    """A page of executions, newest first, and the cursor of the next page."""
    where, args = filter_clauses(f)
    if f.cursor is not None:
        at, wf = decode_cursor(f.cursor)
        where.append("(created_at, workflow_id) < (%s, %s)")
        args.extend([at, wf])
    query = (
        f"SELECT {_SUMMARY_COLS} FROM executions WHERE {' AND '.join(where)}"
        " ORDER BY created_at DESC, workflow_id DESC LIMIT %s"
    )
    args.append(f.limit + 1)
    rows = await (await conn.execute(query.encode(), args)).fetchall()
    items = [_summary(r) for r in rows[: f.limit]]
    more = len(rows) > f.limit
    nxt = encode_cursor(items[-1].created_at, items[-1].workflow_id) if more and items else None
    return items, nxt


async def workflow_tenant(conn: AConn, workflow_id: str) -> str | None:
    """The tenant of an execution, or None if the read model does not know it."""
    row = await (
        await conn.execute("SELECT tenant FROM executions WHERE workflow_id = %s", (workflow_id,))
    ).fetchone()
    return None if row is None else str(row[0])


_STEPS_JSON = """
(SELECT coalesce(json_agg(json_build_object(
    'step_key', s.step_key, 'node_id', s.node_id, 'index', s.step_index, 'status', s.status,
    'attempts', s.attempts, 'node_type', s.node_type, 'scheduled_at', s.scheduled_at,
    'finished_at', s.finished_at, 'heartbeat_at', s.heartbeat_at, 'output', s.output,
    'error', CASE WHEN s.error_class IS NULL AND s.message IS NULL THEN NULL ELSE
        json_build_object('error_class', s.error_class, 'error_type', s.error_type,
                          'message', s.message) END
  ) ORDER BY s.scheduled_at NULLS LAST, s.step_key), '[]'::json)
 FROM steps s WHERE s.workflow_id = e.workflow_id)
"""


async def get_workflow(
    conn: AConn, workflow_id: str, tenant: str, with_steps: bool = True
) -> WorkflowDetail | None:
    """One execution of ``tenant`` with its steps (one round trip), or None.

    ``with_steps=False`` leaves ``steps`` empty (the console reads its own step rows)."""
    steps_sql = _STEPS_JSON if with_steps else "'[]'::json"
    row = await (
        await conn.execute(
            f"SELECT {_SUMMARY_COLS}, input, output, reason, actor, {steps_sql}"
            " FROM executions e WHERE workflow_id = %s AND tenant = %s",
            (workflow_id, tenant),
        )
    ).fetchone()
    if row is None:
        return None
    base = _summary(row)
    steps = row[13]
    assert isinstance(steps, list)
    return WorkflowDetail(
        **base.model_dump(), input=row[9], output=row[10], reason=row[11], actor=row[12],
        steps=[StepView.model_validate(step) for step in steps], links=links(workflow_id),
    )  # fmt: skip


def event_view(row: tuple[Any, ...]) -> EventView:
    return EventView(seq=row[0], type=row[1], at=row[2], event_id=row[3], actor=row[4], body=row[5])


EVENT_COLS = "seq, type, at, event_id, actor, body"


async def list_events(
    conn: AConn, workflow_id: str, after_seq: int, limit: int, include_notices: bool = True
) -> list[EventView]:
    """Events of one execution with seq > ``after_seq`` in log order."""
    low = after_seq if not include_notices or after_seq > 0 else -1
    rows = await (
        await conn.execute(
            f"SELECT {EVENT_COLS} FROM events WHERE workflow_id = %s AND seq > %s"
            " ORDER BY seq, kafka_offset LIMIT %s",
            (workflow_id, low, limit),
        )
    ).fetchall()
    return [event_view(r) for r in rows]


async def latest_version(conn: AConn, name: str) -> int | None:
    """Highest registered version of definition ``name``."""
    row = await (
        await conn.execute("SELECT max(version) FROM definitions WHERE name = %s", (name,))
    ).fetchone()
    return None if row is None or row[0] is None else int(str(row[0]))
