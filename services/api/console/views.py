"""Shapes the templates receive, built from read-model rows, Redis summaries and events."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from markupsafe import Markup

from kflow.api.console import canvas, dag, svg, timeline
from kflow.api.console.jsonview import Pretty, pretty
from kflow.api.console.queries import StepRow
from kflow.api.models import EventView, WorkflowDetail, WorkflowSummary
from kflow.api.queries import ListFilter
from kflow.core.definition import parse_definition
from kflow.core.errors import KflowError
from kflow.projections.log_event import DEFAULT_TENANT


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
        and (not f.id_contains or f.id_contains in row.workflow_id)
    )


def _dt(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)


def _ms(at: datetime) -> int:
    return int(at.timestamp() * 1000)


@dataclass(frozen=True, slots=True)
class StepPanel:
    """A step row; its input and output are fetched when opened (``…/step?key=``)."""

    row: StepRow
    local: str
    error: str


@dataclass(frozen=True, slots=True)
class WorkflowPage:
    """Everything the workflow page (and its live part) draws."""

    detail: WorkflowDetail
    input: Pretty
    output: Pretty
    dag_svg: Markup | None
    dag_error: str
    timeline: timeline.TimelineView
    timeline_svg: Markup
    steps: tuple[StepPanel, ...]
    events: tuple[EventView, ...]
    events_total: int
    waiting: tuple[str, ...]
    """Local step keys a signal can go to (approvals waiting, reviews)."""
    node_count: int
    steps_total: int = 0
    dag_data: Markup | None = None
    """A large graph as JSON for the page's canvas (then ``dag_svg`` is None)."""
    levels: tuple[canvas.LevelSummary, ...] = ()
    """Per-level counts of a large graph (what the page shows without JavaScript)."""
    timeline_data: Markup | None = None
    """A large timeline as JSON for the page's canvas (then ``timeline_svg`` is empty)."""

    def with_steps_cut(self, limit: int) -> WorkflowPage:
        """The same page listing only the first ``limit`` steps (the graph and timeline keep
        all): a 1,000-step table is most of a page's weight and rarely read whole."""
        total = len(self.steps)
        return dataclasses.replace(self, steps=self.steps[:limit], steps_total=total)


def workflow_page(
    detail: WorkflowDetail,
    steps: list[StepRow],
    points: list[tuple[str, int, dict[str, Any]]],
    events: list[EventView],
    events_total: int,
    definition: dict[str, Any] | None,
) -> WorkflowPage:
    """The page of one run from its rows, its timeline points and the events to list."""
    wf = detail.workflow_id
    cut = len(wf) + 1
    drawn, problem, count = None, "", 0
    dag_data: Markup | None = None
    levels: tuple[canvas.LevelSummary, ...] = ()
    if definition is not None:
        try:
            defn = parse_definition(definition)
            states = [dag.StepState(s.node_id, s.index, s.status) for s in steps]
            laid_out, count = dag.draw(defn, states), len(defn.nodes)
            if count > canvas.CANVAS_ABOVE:
                dag_data, levels = canvas.dag_data(laid_out), canvas.levels(laid_out)
            else:
                drawn = svg.dag_svg(laid_out)
        except KflowError as e:
            problem = f"the definition cannot be drawn: {e}"
    else:
        problem = "the WorkflowStarted event is not in the read model yet"
    finished = detail.finished_at
    now_ms = _ms(finished) if finished else _ms(datetime.now(UTC))
    chart = timeline.view(timeline.lanes_from_events(points, wf), now_ms)
    big_chart = len(chart.labels) > canvas.CANVAS_ABOVE
    chart_svg = Markup("") if big_chart else svg.timeline_svg(chart)
    chart_data = canvas.timeline_data(chart) if big_chart else None
    panels = tuple(
        StepPanel(s, s.step_key[cut:], ": ".join(p for p in (s.error_type, s.message) if p))
        for s in steps
    )
    waiting = tuple(
        s.step_key[cut:]
        for s in steps
        if s.status == "review" or (s.status == "waiting" and s.node_type == "approval")
    )
    return WorkflowPage(
        detail, pretty(detail.input), pretty(detail.output), drawn, problem, chart,
        chart_svg, panels, tuple(events), events_total, waiting, count,
        len(panels), dag_data, levels, chart_data,
    )  # fmt: skip
