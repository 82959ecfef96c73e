"""The PostgreSQL projection: batches of log events applied exactly once.

Each batch is one transaction that writes the rows *and* the next offsets to
read; the consumer seeks to those offsets on assignment, and the transaction
re-reads them under a lock and skips anything already applied, so an event
lands once even when a projector dies mid-batch or two briefly overlap in a
rebalance. Rows are folded by the core's ``kflow.core.views`` functions, never by a
second state machine.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import time
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field

import psycopg

from kflow.core.events import StepEvent, WorkflowStarted, is_notice
from kflow.core.views import StepView, WorkflowSummary, apply_step_event, apply_workflow_event
from kflow.observability.metrics import EVENTS_IN, PROJECTION_BATCH, PROJECTION_DELAY
from kflow.projections import fold
from kflow.projections.db import connect
from kflow.projections.fold import (
    EVENT_COL_TYPES,
    EVENT_COLS,
    EXECUTION_COL_TYPES,
    EXECUTION_COLS,
    STEP_COL_TYPES,
    STEP_COLS,
)
from kflow.projections.log_event import DefinitionRecord, LogEvent
from kflow.projections.pgcopy import copy_rows, documents_as_text

log = logging.getLogger(__name__)

Partition = tuple[str, int]
Conn = psycopg.Connection[tuple[object, ...]]

# Rows are COPYed into per-connection temp tables, then merged with one statement each.
_STAGING = (
    "CREATE TEMP TABLE IF NOT EXISTS stage_executions"
    " (LIKE executions INCLUDING DEFAULTS) ON COMMIT DELETE ROWS;"
    " CREATE TEMP TABLE IF NOT EXISTS stage_steps"
    " (LIKE steps INCLUDING DEFAULTS) ON COMMIT DELETE ROWS"
)
_EXECUTION_MERGE = f"""
INSERT INTO executions ({EXECUTION_COLS}) SELECT {EXECUTION_COLS} FROM stage_executions
ON CONFLICT (workflow_id) DO UPDATE SET
    status = EXCLUDED.status, output = EXCLUDED.output, reason = EXCLUDED.reason,
    updated_at = EXCLUDED.updated_at, finished_at = EXCLUDED.finished_at,
    last_seq = EXCLUDED.last_seq
"""
_STEP_MERGE = f"""
INSERT INTO steps ({STEP_COLS}) SELECT {STEP_COLS} FROM stage_steps
ON CONFLICT (workflow_id, step_key) DO UPDATE SET
    status = EXCLUDED.status, attempts = EXCLUDED.attempts, node_type = EXCLUDED.node_type,
    queue = EXCLUDED.queue, input = EXCLUDED.input, output = EXCLUDED.output,
    error_class = EXCLUDED.error_class, error_type = EXCLUDED.error_type,
    message = EXCLUDED.message, scheduled_at = EXCLUDED.scheduled_at,
    finished_at = EXCLUDED.finished_at, heartbeat_at = EXCLUDED.heartbeat_at,
    updated_seq = EXCLUDED.updated_seq
"""
_OFFSET_UPSERT = """
INSERT INTO projection_offsets (projection, topic, partition, next_offset, updated_at)
VALUES (%s, %s, %s, %s, now())
ON CONFLICT (projection, topic, partition) DO UPDATE SET
    next_offset = EXCLUDED.next_offset, updated_at = now()
"""


@dataclass
class BatchResult:
    """What one ``apply`` did."""

    applied: int = 0
    skipped_offsets: int = 0
    """Records at offsets the stored offsets say were already applied."""
    duplicates: int = 0
    """Events whose seq the workflow's state had already folded (a duplicate in the log)."""
    unfoldable: list[tuple[LogEvent, str]] = field(default_factory=list)
    """Events ``evolve`` refused: kept in the audit trail, state unchanged, reason given."""


def observe_delay(projection: str, events: Sequence[LogEvent], done_ms: float) -> None:
    """Record event-time-to-applied for the newest event of each partition in the batch."""
    newest: dict[Partition, int] = {}
    for e in events:
        newest[(e.topic, e.partition)] = e.timestamp_ms
    for ts in newest.values():
        PROJECTION_DELAY.labels(projection).observe(max(0.0, done_ms - ts) / 1000)


def lock_key(schema: str, projection: str, partition: Partition) -> int:
    """Advisory-lock key of one partition of one projection in one schema (signed 64-bit)."""
    name = f"kflow-projection:{schema}:{projection}:{partition[0]}:{partition[1]}"
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)


def lock_partitions(conn: Conn, schema: str, projection: str, parts: Iterable[Partition]) -> None:
    """Serialise writers per partition (sorted, so two writers never deadlock).

    Projector processes own different partitions and never wait for each other;
    a rebuild swap takes every partition's lock and so waits for, and holds off,
    all of them.
    """
    keys = sorted({lock_key(schema, projection, tp) for tp in parts})
    if keys:
        conn.execute("SELECT pg_advisory_xact_lock(k) FROM unnest(%s::bigint[]) AS k", (keys,))


def load_offsets(conn: Conn, projection: str) -> dict[Partition, int]:
    """Stored next offsets of ``projection`` (the caller's transaction, if any)."""
    rows = conn.execute(
        "SELECT topic, partition, next_offset FROM projection_offsets WHERE projection = %s",
        (projection,),
    ).fetchall()
    return {(str(t), int(p)): int(o) for t, p, o in rows}  # type: ignore[call-overload]


@dataclass
class _Fold:
    """Rows changed by one batch (committed to the caches only after the transaction)."""

    summaries: dict[str, tuple[WorkflowSummary, int]] = field(default_factory=dict)
    """workflow id -> (summary, ``at`` of its last event)."""
    inputs: dict[str, bytes | None] = field(default_factory=dict)
    steps: dict[tuple[str, str], StepView] = field(default_factory=dict)


class PostgresProjector:
    """Folds log events into ``executions``, ``steps``, ``events`` and ``definitions``."""

    projection_kind = "postgres"
    reads_definitions = True
    """And it writes the dead letters of refused definitions (ADR 0046)."""

    def __init__(
        self, dsn: str, schema: str, projection: str = "postgres", cache_size: int = 200_000
    ) -> None:
        self.dsn = dsn
        self.schema = schema
        self.projection = projection
        self.conn: Conn = connect(dsn, schema)
        self._summaries: OrderedDict[str, WorkflowSummary] = OrderedDict()
        self._steps: OrderedDict[tuple[str, str], StepView] = OrderedDict()
        self._cache_size = cache_size
        self._staged = False
        self._written: dict[Partition, int] = {}

    def forget(self) -> None:
        """Drop cached rows (after a rebalance another process may have written them)."""
        self._summaries.clear()
        self._steps.clear()
        self._written.clear()

    def recover(self) -> None:
        """Reconnect after a failed batch (its transaction was rolled back)."""
        self.forget()
        self._staged = False
        try:
            self.conn.close()
        finally:
            self.conn = connect(self.dsn, self.schema)

    def close(self) -> None:
        self.conn.close()

    def stored_offsets(self) -> dict[Partition, int]:
        """Next offsets to read, as committed with the rows."""
        with self.conn.transaction():
            return load_offsets(self.conn, self.projection)

    def apply(
        self,
        events: Sequence[LogEvent],
        definitions: Sequence[DefinitionRecord] = (),
        positions: Mapping[Partition, int] | None = None,
    ) -> BatchResult:
        """Apply one batch in one transaction, with the offsets it reaches.

        ``positions`` are the next offsets after everything consumed in the
        batch, including records that were not events (poison sent to the DLQ),
        so those are not read again.
        """
        started = time.perf_counter()
        result = BatchResult()
        reached: dict[Partition, int] = dict(positions or {})
        for records in (events, definitions):
            for r in records:
                tp = (r.topic, r.partition)
                if r.offset >= reached.get(tp, 0):
                    reached[tp] = r.offset + 1
        with self._staging_kept_on_rollback(), self.conn.transaction():
            lock_partitions(self.conn, self.schema, self.projection, reached)
            stored = load_offsets(self.conn, self.projection)
            if any(stored.get(tp) != o for tp, o in self._written.items()):
                # another writer (a rebuild swap, a rebalance overlap) moved the rows on
                self.forget()
            fresh = [e for e in events if e.offset >= stored.get((e.topic, e.partition), 0)]
            fresh_defs = [
                d for d in definitions if d.offset >= stored.get((d.topic, d.partition), 0)
            ]
            result.skipped_offsets = len(events) + len(definitions) - len(fresh) - len(fresh_defs)
            changed = self._fold(fresh, result)
            self._write_events(fresh)
            self._merge(
                "stage_executions",
                EXECUTION_COLS,
                EXECUTION_COL_TYPES,
                _EXECUTION_MERGE,
                [
                    fold.execution_row(s, changed.inputs.get(wf), at)
                    for wf, (s, at) in sorted(changed.summaries.items())
                ],
            )
            self._merge(
                "stage_steps",
                STEP_COLS,
                STEP_COL_TYPES,
                _STEP_MERGE,
                [fold.step_row(v) for _, v in sorted(changed.steps.items())],
            )
            self._write_definitions(fresh_defs)
            moved = {tp: o for tp, o in reached.items() if o > stored.get(tp, -1)}
            if moved:
                with self.conn.cursor() as cur:
                    cur.executemany(
                        _OFFSET_UPSERT,
                        [(self.projection, t, p, o) for (t, p), o in sorted(moved.items())],
                    )
        self._remember(changed)
        self._written.update(moved)
        result.applied = len(fresh) + len(fresh_defs)
        PROJECTION_BATCH.labels(self.projection).observe(time.perf_counter() - started)
        observe_delay(self.projection, fresh, time.time() * 1000)
        if fresh:
            EVENTS_IN.labels(f"projector-{self.projection}", fresh[0].topic).inc(len(fresh))
        return result

    @contextlib.contextmanager
    def _staging_kept_on_rollback(self) -> Iterator[None]:
        """A failed batch leaves the sink usable: staging tables made in a transaction that
        rolls back are gone with it, so they are made again next time."""
        staged = self._staged
        try:
            yield
        except BaseException:
            self._staged = staged
            raise

    def _remember(self, changed: _Fold) -> None:
        for wf, (s, _) in changed.summaries.items():
            self._summaries[wf] = s
            self._summaries.move_to_end(wf)
        for key, v in changed.steps.items():
            self._steps[key] = v
            self._steps.move_to_end(key)
        while len(self._summaries) > self._cache_size:
            self._summaries.popitem(last=False)
        while len(self._steps) > self._cache_size * 4:
            self._steps.popitem(last=False)

    def _load(
        self, workflow_ids: Iterable[str], step_keys: Iterable[tuple[str, str]]
    ) -> tuple[dict[str, WorkflowSummary], dict[tuple[str, str], StepView]]:
        summaries = {w: self._summaries[w] for w in workflow_ids if w in self._summaries}
        missing = sorted({w for w in workflow_ids if w not in summaries})
        if missing:
            with self.conn.cursor() as cur:
                documents_as_text(cur)
                cur.execute(
                    f"SELECT {EXECUTION_COLS} FROM executions WHERE workflow_id = ANY(%s)".encode(),
                    (missing,),
                )
                for row in cur.fetchall():
                    s = fold.summary_from_row(row)
                    summaries[s.workflow_id] = s
        steps = {k: self._steps[k] for k in step_keys if k in self._steps}
        want = sorted({k for k in step_keys if k not in steps and k[0] in summaries})
        if want:
            with self.conn.cursor() as cur:
                documents_as_text(cur)
                cur.execute(
                    f"SELECT {STEP_COLS} FROM steps WHERE (workflow_id, step_key) IN"
                    " (SELECT * FROM unnest(%s::text[], %s::text[]))".encode(),
                    ([w for w, _ in want], [k for _, k in want]),
                )
                for row in cur.fetchall():
                    v = fold.step_from_row(row)
                    steps[(v.workflow_id, v.step_key)] = v
        return summaries, steps

    def _fold(self, events: Sequence[LogEvent], result: BatchResult) -> _Fold:
        per_wf: dict[str, list[LogEvent]] = {}
        step_keys: list[tuple[str, str]] = []
        for le in events:
            ev = le.event
            if not is_notice(ev):
                per_wf.setdefault(ev.workflow_id, []).append(le)
                if isinstance(ev, StepEvent):
                    step_keys.append((ev.workflow_id, ev.step_key))
        summaries, steps = self._load(list(per_wf), step_keys)
        out = _Fold()
        for wf, items in per_wf.items():
            summary = summaries.get(wf)
            last_at = 0
            for le in items:
                ev = le.event
                if summary is not None and ev.seq <= summary.seq:
                    result.duplicates += 1
                    continue
                if summary is None and not isinstance(ev, WorkflowStarted):
                    # the log is corrupt here: keep the event audited, report it
                    result.unfoldable.append((le, f"{le.type} before WorkflowStarted"))
                    log.error("cannot fold %s seq %s of %s", le.type, le.seq, wf)
                    continue
                if isinstance(ev, WorkflowStarted):
                    if summary is not None:
                        result.unfoldable.append((le, "second WorkflowStarted"))
                        continue
                    out.inputs[wf] = fold.json_bytes(ev.input)
                summary = apply_workflow_event(summary, ev)
                last_at = ev.at
                if isinstance(ev, StepEvent):
                    key = (wf, ev.step_key)
                    steps[key] = out.steps[key] = apply_step_event(steps.get(key), ev)
            if summary is not None and last_at:
                out.summaries[wf] = (summary, last_at)
        return out

    def _write_events(self, events: Sequence[LogEvent]) -> None:
        if not events:
            return
        with self.conn.cursor() as cur:
            copy_rows(cur, "events", EVENT_COLS, EVENT_COL_TYPES, map(fold.event_row, events))

    def _merge(
        self, table: str, cols: str, types: Sequence[str], merge: str, rows: Sequence[fold.Row]
    ) -> None:
        if not rows:
            return
        if not self._staged:
            self.conn.execute(_STAGING)
            self._staged = True
        with self.conn.cursor() as cur:
            copy_rows(cur, table, cols, types, rows)
            cur.execute(merge.encode())

    def _write_definitions(self, records: Sequence[DefinitionRecord]) -> None:
        if not records:
            return
        with self.conn.cursor() as cur:
            for d in records:
                if d.definition is None:
                    cur.execute(
                        "DELETE FROM definitions WHERE name = %s AND version = %s",
                        (d.name, d.version),
                    )
                else:
                    cur.execute(
                        "INSERT INTO definitions (name, version, definition) VALUES (%s, %s, %s)"
                        " ON CONFLICT (name, version) DO UPDATE"
                        " SET definition = EXCLUDED.definition, updated_at = now()",
                        (d.name, d.version, json.dumps(d.definition)),
                    )
