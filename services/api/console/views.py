"""Shapes the templates receive, built from read-model rows, Redis summaries and events."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from kflow.api.console import dag, timeline
from kflow.api.console.jsonview import Pretty, pretty
from kflow.api.console.queries import StepRow
from kflow.api.models import EventView, WorkflowDetail, WorkflowSummary
from kflow.api.queries import ListFilter
from kflow.core.definition import parse_definition
from kflow.core.errors import KflowError
from kflow.projections.log_event import DEFAULT_TENANT

EVENTS_SHOWN = 300


@dataclass(frozen=True, slots=True)
class Row:
    """One line of the workflow list."""

    workflow_id: str
    name: str
    version: int
    status: str
    created: datetime | int
    updated: datetime | int | None
    finished: datetime | int | None


def row_from_summary(s: WorkflowSummary) -> Row:
    return Row(
        s.workflow_id, s.name, s.version, s.status, s.created_at, s.updated_at, s.finished_at
    )


def row_from_hash(summary: dict[str, Any], updated_ms: int | None) -> Row:
    """A row from the Redis status hash (the core's ``WorkflowSummary`` as JSON)."""
    return Row(
        str(summary["workflow_id"]), str(summary["name"]), int(summary["version"]),
        str(summary["status"]), int(summary["started_at"]), updated_ms, summary.get("finished_at"),
    )  # fmt: skip


def hash_tenant(summary: dict[str, Any]) -> str:
    return str(summary.get("tenant") or DEFAULT_TENANT)


def matches(f: ListFilter, row: Row) -> bool:
    """Whether a live row belongs on a page filtered by ``f``."""
    created = row.created if isinstance(row.created, datetime) else _dt(row.created)
    return (
        (f.status is None or row.status == f.status)
        and (f.name is None or row.name == f.name)
        and (f.created_after is None or created >= f.created_after)
        and (f.created_before is None or created < f.created_before)
        and (not f.id_contains or f.id_contains.casefold() in row.workflow_id.casefold())
    )


def _dt(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)


def _ms(at: datetime) -> int:
    return int(at.timestamp() * 1000)


@dataclass(frozen=True, slots=True)
class StepPanel:
    """A step with its input and output ready to show."""

    row: StepRow
    local: str
    input: Pretty
    output: Pretty
    error: str


@dataclass(frozen=True, slots=True)
class WorkflowPage:
    """Everything the workflow page (and its live part) draws."""

    detail: WorkflowDetail
    input: Pretty
    output: Pretty
    dag: dag.DagLayout | None
    dag_error: str
    timeline: timeline.TimelineView
    steps: tuple[StepPanel, ...]
    events: tuple[EventView, ...]
    events_total: int
    waiting: tuple[str, ...]
    """Local step keys a signal can go to (approvals waiting, reviews)."""
    node_count: int


def workflow_page(
    detail: WorkflowDetail,
    steps: list[StepRow],
    events: list[EventView],
    definition: dict[str, Any] | None,
    all_events: bool,
) -> WorkflowPage:
    wf = detail.workflow_id
    cut = len(wf) + 1
    layout, problem, count = None, "", 0
    if definition is not None:
        try:
            defn = parse_definition(definition)
            states = [dag.StepState(s.node_id, s.index, s.status) for s in steps]
            layout, count = dag.draw(defn, states), len(defn.nodes)
        except KflowError as e:
            problem = f"the definition cannot be drawn: {e}"
    else:
        problem = "the WorkflowStarted event is not in the read model yet"
    finished = detail.finished_at
    now_ms = _ms(finished) if finished else _ms(datetime.now(UTC))
    lanes = timeline.lanes_from_events(((e.type, _ms(e.at), e.body) for e in events), wf)
    panels = tuple(
        StepPanel(
            s, s.step_key[cut:], pretty(s.input), pretty(s.output),
            ": ".join(p for p in (s.error_type, s.message) if p),
        )
        for s in steps
    )  # fmt: skip
    waiting = tuple(
        s.step_key[cut:]
        for s in steps
        if s.status == "review" or (s.status == "waiting" and s.node_type == "approval")
    )
    shown = events if all_events else events[-EVENTS_SHOWN:]
    return WorkflowPage(
        detail, pretty(detail.input), pretty(detail.output), layout, problem,
        timeline.view(lanes, now_ms), panels, tuple(shown), len(events), waiting, count,
    )  # fmt: skip
