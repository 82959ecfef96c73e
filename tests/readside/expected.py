"""The read model a log must produce, computed from the core's state fold (independent path).

The projector folds events with ``kflow.core.views.apply_*_event``; these
expectations come from ``replay`` (``evolve``) and ``views.summary/step_view``,
so a projection that drops, duplicates or misorders events disagrees.
"""

from __future__ import annotations

from typing import Any

import psycopg

from kflow.core.events import StepEvent
from kflow.core.replay import replay
from kflow.core.views import step_view, summary
from kflow.projections.log_event import DEFAULT_TENANT
from tests.readside.workload import WorkflowLog


def expected_executions(logs: list[WorkflowLog]) -> dict[str, dict[str, Any]]:
    out = {}
    for w in logs:
        state = replay(w.events)
        s = summary(state)
        out[w.workflow_id] = {
            "tenant": s.tenant or DEFAULT_TENANT,
            "name": s.name,
            "version": s.version,
            "status": s.status,
            "output": s.output,
            "reason": s.reason,
            "last_seq": s.seq,
            "input": state.input,
        }
    return out


def expected_steps(logs: list[WorkflowLog]) -> dict[tuple[str, str], dict[str, Any]]:
    out = {}
    for w in logs:
        state = replay(w.events)
        last_seq = {}
        for e in w.events:
            if isinstance(e, StepEvent):
                last_seq[e.step_key] = e.seq
        for key, rec in state.steps.items():
            v = step_view(state, rec)
            out[(w.workflow_id, key)] = {
                "status": v.status,
                "attempts": v.attempt,
                "node_type": v.node_type,
                "output": v.output,
                "error_class": v.error_class,
                "updated_seq": last_seq[key],
            }
    return out


def actual_executions(conn: psycopg.Connection[tuple[object, ...]]) -> dict[str, dict[str, Any]]:
    rows = conn.execute(
        "SELECT workflow_id, tenant, name, version, status, output, reason, last_seq, input"
        " FROM executions"
    ).fetchall()
    keys = ("tenant", "name", "version", "status", "output", "reason", "last_seq", "input")
    return {str(r[0]): dict(zip(keys, r[1:], strict=True)) for r in rows}


def actual_steps(
    conn: psycopg.Connection[tuple[object, ...]],
) -> dict[tuple[str, str], dict[str, Any]]:
    rows = conn.execute(
        "SELECT workflow_id, step_key, status, attempts, node_type, output, error_class,"
        " updated_seq FROM steps"
    ).fetchall()
    keys = ("status", "attempts", "node_type", "output", "error_class", "updated_seq")
    return {(str(r[0]), str(r[1])): dict(zip(keys, r[2:], strict=True)) for r in rows}


def event_keys(conn: psycopg.Connection[tuple[object, ...]]) -> list[tuple[str, int]]:
    """(workflow id, seq) of every audited event, duplicates kept."""
    rows = conn.execute("SELECT workflow_id, seq FROM events ORDER BY 1, 2").fetchall()
    return [(str(w), int(str(s))) for w, s in rows]


def logged_keys(logs: list[WorkflowLog]) -> list[tuple[str, int]]:
    return sorted((w.workflow_id, e.seq) for w in logs for e in w.events)
