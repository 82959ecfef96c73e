"""Read-model queries of the console pages (the JSON API's live in ``kflow.api.queries``)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from kflow.api.models import EventView
from kflow.api.queries import (
    EVENT_COLS,
    AConn,
    ListFilter,
    contains_pattern,
    event_view,
    list_events,
)

STATUSES = ("running", "paused", "completed", "failed", "cancelled")
_PAGE = 1000
_BATCH_SHOWN = 50


async def status_counts(conn: AConn, f: ListFilter) -> dict[str, int]:
    """Executions per status under ``f``'s filters other than status (and any cursor)."""
    where = ["tenant = %s"]
    args: list[Any] = [f.tenant]
    for clause, value in (
        ("name = %s", f.name),
        ("created_at >= %s", f.created_after),
        ("created_at < %s", f.created_before),
    ):
        if value is not None:
            where.append(clause)
            args.append(value)
    pattern = contains_pattern(f.id_contains)
    if pattern is not None:
        where.append("workflow_id LIKE %s")
        args.append(pattern)
    query = f"SELECT status, count(*) FROM executions WHERE {' AND '.join(where)} GROUP BY status"
    rows = await (await conn.execute(query.encode(), args)).fetchall()
    counts = dict.fromkeys(STATUSES, 0)
    for status, n in rows:
        counts[str(status)] = int(str(n))
    return counts


@dataclass(frozen=True, slots=True)
class StepRow:
    """One step with everything the workflow page shows (its input and output load on demand,
    ``step_value``: a long run's documents would be most of the page's time)."""

    step_key: str
    node_id: str
    index: int | None
    status: str
    attempts: int
    node_type: str | None
    error_class: str | None
    error_type: str | None
    message: str | None
    scheduled_at: datetime | None
    finished_at: datetime | None


_STEP_COLS = (
    "step_key, node_id, step_index, status, attempts, node_type, error_class,"
    " error_type, message, scheduled_at, finished_at"
)


async def step_rows(conn: AConn, workflow_id: str) -> list[StepRow]:
    """Every step of a run, in scheduling order (call only after the tenant check)."""
    rows = await (
        await conn.execute(
            f"SELECT {_STEP_COLS} FROM steps WHERE workflow_id = %s"
            " ORDER BY scheduled_at NULLS LAST, step_key",
            (workflow_id,),
        )
    ).fetchall()
    return [StepRow(*r) for r in rows]  # type: ignore[arg-type]


async def step_value(conn: AConn, workflow_id: str, step_key: str, which: str) -> tuple[bool, Any]:
    """(found, value) of a step's ``input`` or ``output`` (call only after the tenant check)."""
    column = {"input": "input", "output": "output"}[which]
    row = await (
        await conn.execute(
            f"SELECT {column} FROM steps WHERE workflow_id = %s AND step_key = %s".encode(),
            (workflow_id, step_key),
        )
    ).fetchone()
    return (False, None) if row is None else (True, row[0])


async def all_events(conn: AConn, workflow_id: str) -> list[EventView]:
    """The whole audit trail of a run, notices included, in log order."""
    out: list[EventView] = []
    after = 0
    while True:
        page = await list_events(conn, workflow_id, after, _PAGE, include_notices=after == 0)
        out.extend(page)
        if len(page) < _PAGE:
            return out
        after = page[-1].seq


async def recent_events(conn: AConn, workflow_id: str, limit: int) -> tuple[list[EventView], int]:
    """The last ``limit`` events of a run (notices included) in log order, and how many it has."""
    rows = await (
        await conn.execute(
            f"SELECT {EVENT_COLS} FROM (SELECT {EVENT_COLS}, kafka_offset FROM events"
            " WHERE workflow_id = %s ORDER BY seq DESC, kafka_offset DESC LIMIT %s) last"
            " ORDER BY seq, kafka_offset",
            (workflow_id, limit),
        )
    ).fetchall()
    total = await (
        await conn.execute("SELECT count(*) FROM events WHERE workflow_id = %s", (workflow_id,))
    ).fetchone()
    return [event_view(r) for r in rows], int(str(total[0])) if total else 0


async def timeline_points(conn: AConn, workflow_id: str) -> list[tuple[str, int, dict[str, Any]]]:
    """What the timeline folds, per event: type, time (ms) and the few body fields it reads
    (extracted by PostgreSQL, so a long run's bodies are not all parsed here)."""
    rows = await (
        await conn.execute(
            "SELECT type, (extract(epoch FROM at) * 1000)::bigint, body ->> 'step_key',"
            " body ->> 'attempt', body ->> 'kind', body ->> 'due_at'"
            " FROM events WHERE workflow_id = %s AND seq > 0 ORDER BY seq",
            (workflow_id,),
        )
    ).fetchall()
    return [
        (str(t), int(str(at)), {"step_key": key, "attempt": attempt, "kind": kind, "due_at": due})
        for t, at, key, attempt, kind, due in rows
    ]


async def started_definition(conn: AConn, workflow_id: str) -> dict[str, Any] | None:
    """The definition the run started with (embedded in its ``WorkflowStarted``)."""
    row = await (
        await conn.execute(
            "SELECT body -> 'definition' FROM events WHERE workflow_id = %s AND seq = 1",
            (workflow_id,),
        )
    ).fetchone()
    value = None if row is None else row[0]
    return value if isinstance(value, dict) else None


async def command_outcome(
    conn: AConn, workflow_id: str, command: str, after_seq: int, actor: str, since: datetime
) -> list[EventView]:
    """The events a command led to: those it caused after ``after_seq`` (the first names it in
    its ``cause``, the rest follow until the next input's), or the notice refusing it
    (``InputRejected`` for this command type from this actor since ``since``); [] for none yet."""
    row = await (
        await conn.execute(
            f"SELECT {EVENT_COLS} FROM events WHERE workflow_id = %s AND ("
            " (seq > %s AND body -> 'cause' ->> 'type' = %s) OR"
            " (seq = 0 AND type = 'InputRejected' AND body ->> 'input_type' = %s"
            "  AND actor = %s AND at >= %s))"
            " ORDER BY seq = 0, seq LIMIT 1",
            (workflow_id, after_seq, command, command, actor, since),
        )
    ).fetchone()
    if row is None:
        return []
    first = event_view(row)
    if first.seq == 0:
        return [first]
    caused = [first]
    for later in await list_events(conn, workflow_id, first.seq, _BATCH_SHOWN, False):
        if later.body.get("cause") is not None:
            break
        caused.append(later)
    return caused


async def last_seq(conn: AConn, workflow_id: str) -> int:
    """The run's latest seq in the read model (0 if unknown)."""
    row = await (
        await conn.execute("SELECT last_seq FROM executions WHERE workflow_id = %s", (workflow_id,))
    ).fetchone()
    return 0 if row is None else int(str(row[0]))


@dataclass(frozen=True, slots=True)
class Stuck:
    """A run that needs a look, and why."""

    workflow_id: str
    name: str
    status: str
    why: str
    since: datetime | None


async def stuck_workflows(
    conn: AConn, tenant: str, threshold_s: float, limit: int = 50
) -> list[Stuck]:
    """Runs silent past ``threshold_s``, steps past their timeout, signals awaited past it."""
    out: list[Stuck] = []
    silent = await (
        await conn.execute(
            "SELECT workflow_id, name, status, updated_at FROM executions e"
            " WHERE tenant = %s AND status = 'running'"
            " AND updated_at < now() - make_interval(secs => %s)"
            # silence is expected while a step sleeps or awaits a signal (reported below)
            " AND NOT EXISTS (SELECT 1 FROM steps s WHERE s.workflow_id = e.workflow_id"
            "   AND s.status IN ('waiting', 'review'))"
            " ORDER BY updated_at LIMIT %s",
            (tenant, threshold_s, limit),
        )
    ).fetchall()
    for wf, name, status, at in silent:
        out.append(Stuck(str(wf), str(name), str(status), "no event", at))  # type: ignore[arg-type]
    overdue = await (
        await conn.execute(
            "SELECT e.workflow_id, e.name, e.status, s.step_key, s.scheduled_at, t.timeout_ms"
            " FROM executions e JOIN steps s USING (workflow_id)"
            " CROSS JOIN LATERAL (SELECT (ev.body ->> 'timeout_ms')::bigint AS timeout_ms"
            "   FROM events ev WHERE ev.workflow_id = s.workflow_id AND ev.type = 'StepScheduled'"
            "   AND ev.body ->> 'step_key' = s.step_key ORDER BY ev.seq DESC LIMIT 1) t"
            " WHERE e.tenant = %s AND e.status IN ('running', 'paused') AND s.status = 'running'"
            " AND t.timeout_ms IS NOT NULL"
            " AND s.scheduled_at + t.timeout_ms * interval '1 millisecond' < now()"
            " ORDER BY s.scheduled_at LIMIT %s",
            (tenant, limit),
        )
    ).fetchall()
    for wf, name, status, key, at, timeout_ms in overdue:
        why = f"step {str(key)[len(str(wf)) + 1 :]} past its {timeout_ms} ms timeout"
        out.append(Stuck(str(wf), str(name), str(status), why, at))  # type: ignore[arg-type]
    waiting = await (
        await conn.execute(
            "SELECT e.workflow_id, e.name, e.status, s.step_key, s.status, s.scheduled_at"
            " FROM executions e JOIN steps s USING (workflow_id)"
            " WHERE e.tenant = %s AND e.status IN ('running', 'paused')"
            " AND (s.status = 'review' OR (s.status = 'waiting' AND s.node_type = 'approval'))"
            " AND s.scheduled_at < now() - make_interval(secs => %s)"
            " ORDER BY s.scheduled_at LIMIT %s",
            (tenant, threshold_s, limit),
        )
    ).fetchall()
    for wf, name, status, key, step_status, at in waiting:
        what = "review" if step_status == "review" else "signal"
        why = f"step {str(key)[len(str(wf)) + 1 :]} awaiting a {what}"
        out.append(Stuck(str(wf), str(name), str(status), why, at))  # type: ignore[arg-type]
    return out


@dataclass(frozen=True, slots=True)
class OffsetRow:
    """Where the PostgreSQL projection is in one partition."""

    topic: str
    partition: int
    next_offset: int
    updated_at: datetime


async def projection_offsets(conn: AConn, projection: str = "postgres") -> list[OffsetRow]:
    """The PostgreSQL projection's committed positions."""
    rows = await (
        await conn.execute(
            "SELECT topic, partition, next_offset, updated_at FROM projection_offsets"
            " WHERE projection = %s ORDER BY topic, partition",
            (projection,),
        )
    ).fetchall()
    return [OffsetRow(*r) for r in rows]  # type: ignore[arg-type]


@dataclass(frozen=True, slots=True)
class DefinitionRow:
    """One registered version and how many of the tenant's unfinished runs use it."""

    name: str
    version: int
    definition: dict[str, Any]
    active: int
    total: int


async def definitions_with_usage(conn: AConn, tenant: str) -> list[DefinitionRow]:
    """Every registered definition version, with the tenant's runs on it."""
    rows = await (
        await conn.execute(
            "SELECT d.name, d.version, d.definition,"
            " count(e.workflow_id) FILTER (WHERE e.status IN ('running', 'paused')),"
            " count(e.workflow_id)"
            " FROM definitions d LEFT JOIN executions e"
            " ON e.tenant = %s AND e.name = d.name AND e.version = d.version"
            " GROUP BY d.name, d.version"
            " ORDER BY d.name, d.version DESC",
            (tenant,),
        )
    ).fetchall()
    return [DefinitionRow(*r) for r in rows]  # type: ignore[arg-type]
