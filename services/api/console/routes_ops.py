"""Operations (lag, freshness, stuck runs, instances), Dead letters and Definitions pages."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import HTMLResponse
from markupsafe import Markup

from kflow.api import dead_letters as dead_letters_of
from kflow.api import routes_dlq
from kflow.api.apikeys import Principal, Scope
from kflow.api.auth import resources
from kflow.api.console import dag, kafka_views, svg
from kflow.api.console.queries import definitions_with_usage, projection_offsets, stuck_workflows
from kflow.api.console.render import ConsoleRoute, render
from kflow.api.console.session import require_scope, signed_in, verified_form
from kflow.api.console.state import console_state
from kflow.api.problems import Problem
from kflow.bus.errors import BusError
from kflow.bus.reader import ReaderError
from kflow.bus.topics import topic_names
from kflow.core.definition import parse_definition
from kflow.core.errors import KflowError
from kflow.observability.lag import LagRow, LagUnavailable

router = APIRouter(prefix="/ui", route_class=ConsoleRoute, include_in_schema=False)
User = Annotated[Principal, Depends(signed_in)]
CHART_W, CHART_H = 240, 40


@dataclass(frozen=True, slots=True)
class Freshness:
    """How far one projection is behind the log in one partition."""

    projection: str
    topic: str
    partition: int
    behind: int
    seconds: float | None


def _sparkline(points: list[tuple[float, int]]) -> str:
    """SVG polyline points of a lag series (time on x, lag on y)."""
    if not points:
        return ""
    t0, t1 = points[0][0], max(points[-1][0], points[0][0] + 1)
    top = max(max(p[1] for p in points), 1)
    return " ".join(
        f"{(t - t0) / (t1 - t0) * CHART_W:.1f},{CHART_H - lag / top * (CHART_H - 2) - 1:.1f}"
        for t, lag in points
    )


def _freshness(
    bootstrap: str, rows: list[LagRow], positions: dict[str, dict[tuple[str, int], int]]
) -> list[Freshness]:
    """Events and seconds each projection is behind, per partition it has a position in.

    End offsets come from the lag query (every projector group commits to Kafka); seconds
    behind is the age of the oldest event not yet projected (0 when nothing is behind).
    """
    ends = {(r.topic, r.partition): r.end for r in rows}
    out: list[Freshness] = []
    now_ms = time.time() * 1000
    for name, where in positions.items():
        behind = {tp: at for tp, at in where.items() if tp in ends and ends[tp] > at}
        stamps = kafka_views.oldest_unread(bootstrap, behind) if behind else {}
        for tp, at in sorted(where.items()):
            if tp not in ends:
                out.append(Freshness(name, tp[0], tp[1], 0, None))
                continue
            age = (now_ms - stamps[tp]) / 1000 if tp in stamps else (None if tp in behind else 0.0)
            out.append(Freshness(name, tp[0], tp[1], max(0, ends[tp] - at), age))
    return out


@router.get("/operations", response_class=HTMLResponse)
async def operations(
    request: Request,
    who: User,
    stuck_after_s: Annotated[int, Query(ge=1, le=30 * 86_400)] = 300,
    part: Annotated[str | None, Query(pattern=r"^live$")] = None,
) -> HTMLResponse:
    """Consumer lag (with a chart), projection freshness, stuck runs, live instances."""
    res = resources(request)
    cfg = res.config
    history = console_state(request).lag
    await asyncio.to_thread(history.sample, cfg.kafka_bootstrap, cfg.topic_prefix)
    try:
        members = await asyncio.to_thread(
            kafka_views.group_members, cfg.kafka_bootstrap, cfg.topic_prefix
        )
        members_error = None
    except LagUnavailable as e:
        members, members_error = [], str(e)
    async with res.db() as conn:
        stuck = await stuck_workflows(conn, who.tenant, float(stuck_after_s))
        offsets = await projection_offsets(conn)
    rows = history.rows or []
    redis_group = f"{cfg.topic_prefix}.projector.redis"
    positions = {
        "postgres": {(o.topic, o.partition): o.next_offset for o in offsets},
        "redis": {(r.topic, r.partition): r.committed or 0 for r in rows if r.group == redis_group},
    }
    freshness = await asyncio.to_thread(_freshness, cfg.kafka_bootstrap, rows, positions)
    series = {g: _sparkline(pts) for g, pts in history.series().items()}
    latest = {g: pts[-1][1] for g, pts in history.series().items() if pts}
    context = {
        "nav": "operations", "lag_rows": rows, "lag_error": history.error, "series": series,
        "latest": latest, "chart_w": CHART_W, "chart_h": CHART_H,
        "samples": len(history.samples or ()), "members": members,
        "members_error": members_error, "stuck": stuck, "stuck_after_s": stuck_after_s,
        "freshness": freshness,
    }  # fmt: skip
    return render(request, "operations_live.html" if part else "operations.html", context, who)


@router.get("/dead-letters", response_class=HTMLResponse)
async def dead_letters(request: Request, who: User) -> HTMLResponse:
    """The newest DLQ records with their source and reason, decoded when they decode (admin)."""
    require_scope(who, Scope.ADMIN)
    try:
        shown = await dead_letters_of.visible(request, who)
        letters, markers, hidden, error = shown.letters, shown.markers, shown.hidden, None
        topic = shown.topic
    except (ReaderError, BusError) as e:
        letters, markers, hidden, error = [], {}, 0, str(e)
        topic = topic_names(resources(request).config.topic_prefix).dlq
    context = {
        "nav": "dead-letters",
        "letters": [(dead_letters_of.id_of(x), x, markers.get(dead_letters_of.id_of(x)))
                    for x in letters],
        "hidden": hidden,
        "topic": topic,
        "error": error,
        "can_act": who.allows(Scope.ADMIN),
    }  # fmt: skip
    return render(request, "dead_letters.html", context, who)


@router.get("/definitions", response_class=HTMLResponse)
async def definitions(
    request: Request, who: User, show: Annotated[str | None, Query(max_length=200)] = None
) -> HTMLResponse:
    """Registered definitions: versions, the DAG of each, how many unfinished runs use it."""
    async with resources(request).db() as conn:
        rows = await definitions_with_usage(conn, who.tenant)
    drawn: dict[str, Markup] = {}
    names: set[str] = set()
    for r in rows:  # newest version of each name first: draw that one, or only ``show``
        key = f"{r.name}@{r.version}"
        wanted = key == show if show is not None else r.name not in names
        names.add(r.name)
        if not wanted:
            continue
        try:
            n = len(drawn)
            layout = dag.draw(parse_definition(r.definition), [])
            drawn[key] = svg.dag_svg(layout, marker=f"arrow-{n}", element_id=f"dag-{n}")
        except KflowError:
            continue
    return render(
        request,
        "definitions.html",
        {"nav": "definitions", "rows": rows, "drawn": drawn, "show": show},
        who,
    )


@router.post("/dead-letters/{action}", response_class=HTMLResponse)
async def dead_letter_action(
    request: Request,
    who: User,
    action: Annotated[str, Path(pattern=r"^(redrive|discard)$")],
) -> HTMLResponse:
    """Redrive or discard the selected letters (confirmed first), and show each outcome."""
    form = await verified_form(request)
    require_scope(who, Scope.ADMIN)
    label = "Redrive" if action == "redrive" else "Discard"
    ids = [k.removeprefix("letter-") for k in form if k.startswith("letter-")]
    htmx = request.headers.get("hx-request") == "true"
    page = "dlq_outcome.html" if htmx else "dlq_outcome_page.html"
    context: dict[str, Any] = {
        "nav": "dead-letters", "label": label, "action": action,
        "ids": ids, "form": form, "refusal": None, "results": [],
    }  # fmt: skip
    if not ids:
        context["refusal"] = "select at least one dead letter (the boxes on the left)"
        return render(request, page, context, who, 422)
    if form.get("confirmed") != "yes":
        return render(request, "dlq_confirm.html", context, who)
    try:
        if action == "discard" and not form.get("reason", "").strip():
            raise Problem(422, "invalid-request", "Invalid request",
                          "reason: say why the letters are discarded")  # fmt: skip
        context["results"] = await routes_dlq.act_on(
            request, who, ids, action, form.get("reason", "")
        )
    except Problem as e:
        context["refusal"] = e.detail
        return render(request, page, context, who, e.status)
    return render(request, page, context, who)
