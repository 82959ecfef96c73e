"""The Workflows list (live) and the page of one workflow (live)."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Annotated, Any
from urllib.parse import urlencode

import orjson
from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, StreamingResponse
from redis.exceptions import RedisError

from kflow.api.apikeys import Principal, Scope
from kflow.api.auth import resources
from kflow.api.console import views
from kflow.api.console.jsonview import pretty
from kflow.api.console.queries import (
    all_events,
    recent_events,
    started_definition,
    status_counts,
    step_rows,
    step_value,
    timeline_points,
)
from kflow.api.console.render import ConsoleRoute, env, render
from kflow.api.console.session import Refused, session_token, signed_in
from kflow.api.console.state import console_state
from kflow.api.models import NAME_PATTERN, WorkflowSummary
from kflow.api.queries import ListFilter, get_workflow, list_workflows, workflow_tenant
from kflow.api.resources import ApiResources
from kflow.api.routes_read import STATUS_PATTERN, WorkflowId, not_found
from kflow.api.stream import event_stream, open_subscription, parse_last_event_id
from kflow.api.streamauth import (
    StreamAuth,
    StreamGuard,
    unauthorized_frame,
    wait_any,
)
from kflow.projections.redis_keys import status_key

router = APIRouter(prefix="/ui", route_class=ConsoleRoute, include_in_schema=False)
User = Annotated[Principal, Depends(signed_in)]
PAGE_SIZE = 50
EVENTS_SHOWN = 100
STEPS_SHOWN = 200
KEEPALIVE_S = 15.0
COUNTS_EVERY_S = 1.0


def _time(label: str, value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        at = datetime.fromisoformat(value)
    except ValueError as e:
        raise Refused(
            400, f"{label}: {value!r} is not a time; give e.g. 2026-01-01T10:00 (UTC)"
        ) from e
    return at if at.tzinfo is not None else at.replace(tzinfo=UTC)


class Filters:
    """The list's query parameters (validated like the JSON API's)."""

    def __init__(
        self,
        status: Annotated[str | None, Query(pattern=r"^([a-z_]{1,32})?$")] = None,
        name: Annotated[str | None, Query(max_length=128)] = None,
        q: Annotated[str | None, Query(max_length=128)] = None,
        after: Annotated[str | None, Query(max_length=40)] = None,
        before: Annotated[str | None, Query(max_length=40)] = None,
        cursor: Annotated[str | None, Query(max_length=400)] = None,
    ) -> None:
        self.status = status or None
        self.name = (name or "").strip() or None
        self.q = (q or "").strip() or None
        self.after, self.before = after or "", before or ""
        self.cursor = cursor or None
        if self.name is not None and not re.fullmatch(NAME_PATTERN, self.name):
            raise Refused(
                400, f"name: {self.name!r} is not a definition name (letters, digits, . _ -)"
            )
        if self.status is not None and not re.fullmatch(STATUS_PATTERN, self.status):
            raise Refused(400, "status: pick one of the listed statuses")

    def list_filter(self, tenant: str, limit: int = PAGE_SIZE) -> ListFilter:
        return ListFilter(
            tenant, self.status, self.name, _time("created after", self.after),
            _time("created before", self.before), limit, self.cursor, self.q,
        )  # fmt: skip

    def query(self, **changes: str | None) -> str:
        """The query string of these filters with ``changes`` (None drops a parameter)."""
        values: dict[str, str | None] = {
            "status": self.status, "name": self.name, "q": self.q,
            "after": self.after or None, "before": self.before or None,
        }  # fmt: skip
        values.update(changes)
        return urlencode({k: v for k, v in values.items() if v})


@router.get("", include_in_schema=False)
@router.get("/", include_in_schema=False)
def home() -> RedirectResponse:
    """The console starts at the workflow list."""
    return RedirectResponse("/ui/workflows", status_code=307)


@router.get("/workflows", response_class=HTMLResponse)
async def workflows(
    request: Request, who: User, filters: Annotated[Filters, Depends()]
) -> HTMLResponse:
    """The tenant's runs, newest first, with counts per status (server-rendered, no JS needed)."""
    flt = filters.list_filter(who.tenant)
    res = resources(request)

    async def page() -> tuple[list[WorkflowSummary], str | None]:
        async with res.db() as conn:
            return await list_workflows(conn, flt)

    async def counted() -> dict[str, int]:
        async with res.db() as conn:
            return await status_counts(conn, flt)

    (items, nxt), counts = await asyncio.gather(page(), counted())  # two connections at once
    context = {
        "nav": "workflows",
        "rows": [views.row_from_summary(s) for s in items],
        "counts": counts,
        "total": sum(counts.values()),
        "f": filters,
        "next_cursor": nxt,
        "first_page": filters.cursor is None,
    }
    return render(request, "workflows.html", context, who)


def _sse(event: str, data: str) -> bytes:
    lines = "".join(f"data: {line}\n" for line in data.splitlines() or [""])
    return f"event: {event}\n{lines}\n".encode()


async def _hash_rows(
    res: ApiResources, ids: list[str]
) -> list[tuple[str, dict[str, Any] | None, int | None]]:
    pipe = res.redis.pipeline(transaction=False)
    for wf in ids:
        pipe.hmget(status_key(res.config.redis_prefix, wf), ["summary", "updated_at"])
    out: list[tuple[str, dict[str, Any] | None, int | None]] = []
    for wf, (summary, updated) in zip(ids, await pipe.execute(), strict=True):
        out.append(
            (wf, orjson.loads(summary) if summary else None, int(updated) if updated else None)
        )
    return out


@router.get("/live/workflows")
async def workflows_live(
    request: Request, who: User, filters: Annotated[Filters, Depends()]
) -> StreamingResponse:
    """SSE for the list: ``row`` (a rendered row to insert or replace), ``drop`` (a row that
    left the filter), ``counts`` (the counts bar), ``reload`` (updates were missed),
    ``unauthorized`` (the key was revoked: the stream ends)."""
    flt = filters.list_filter(who.tenant)
    res = resources(request)
    hub = console_state(request).hub
    row_template = env.get_template("workflow_row.html")
    can_write = who.allows(Scope.WRITE)
    counts_template = env.get_template("counts.html")
    auth = StreamAuth(session_token(request), who)

    async def stream() -> AsyncIterator[bytes]:
        listener = hub.open(who.tenant)
        guard = StreamGuard(res, auth)
        counted = 0.0
        last_frame = time.monotonic()
        try:
            yield b"retry: 2000\n\n"
            while True:
                await wait_any(listener.wake, guard.changed, timeout=guard.recheck_s)
                refused = await guard.check()
                if refused is not None:
                    yield unauthorized_frame(refused, request.url.path)
                    return
                if not listener.wake.is_set():
                    if time.monotonic() - last_frame >= KEEPALIVE_S:
                        last_frame = time.monotonic()
                        yield b": keepalive\n\n"
                    continue
                last_frame = time.monotonic()
                changed, overflowed = listener.take()
                if overflowed:
                    yield _sse("reload", "")
                    continue
                try:
                    found = await _hash_rows(res, sorted(changed))
                except (RedisError, OSError):
                    yield _sse("reload", "")
                    continue
                for wf, summary, updated in found:
                    if summary is None or views.hash_tenant(summary) != who.tenant:
                        continue
                    row = views.row_from_hash(summary, updated)
                    if views.matches(flt, row):
                        yield _sse("row", row_template.render(r=row, can_write=can_write))
                    else:
                        yield _sse("drop", wf)
                wait = COUNTS_EVERY_S - (time.monotonic() - counted)
                await asyncio.sleep(max(wait, 0.3))  # let the PostgreSQL projection catch up
                counted = time.monotonic()
                async with res.db() as conn:
                    counts = await status_counts(conn, flt)
                yield _sse(
                    "counts",
                    counts_template.render(counts=counts, total=sum(counts.values()), f=filters),
                )
        finally:
            guard.close()
            hub.close(listener)

    return StreamingResponse(
        stream(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


async def _page(
    request: Request, who: Principal, workflow_id: str, every_event: bool
) -> views.WorkflowPage:
    async with resources(request).db() as conn:
        detail = await get_workflow(conn, workflow_id, who.tenant, with_steps=False)
        if detail is None:
            raise Refused(404, not_found(workflow_id).detail)
        steps = await step_rows(conn, workflow_id)
        points = await timeline_points(conn, workflow_id)
        if every_event:
            events = await all_events(conn, workflow_id)
            total = len(events)
        else:
            events, total = await recent_events(conn, workflow_id, EVENTS_SHOWN)
        definition = await started_definition(conn, workflow_id)
    page = views.workflow_page(detail, steps, points, events, total, definition)
    return page if every_event else page.with_steps_cut(STEPS_SHOWN)


@router.get("/workflows/{workflow_id}", response_class=HTMLResponse)
async def workflow(
    request: Request,
    who: User,
    workflow_id: WorkflowId,
    events: Annotated[str | None, Query(max_length=8)] = None,
) -> HTMLResponse:
    """One run: DAG, timeline, steps, event log, and the command buttons the key allows."""
    page = await _page(request, who, workflow_id, events == "all")
    return render(
        request,
        "workflow.html",
        {"nav": "workflows", "p": page, "all_events": events == "all"},
        who,
    )


@router.get("/workflows/{workflow_id}/part", response_class=HTMLResponse)
async def workflow_part(
    request: Request,
    who: User,
    workflow_id: WorkflowId,
    events: Annotated[str | None, Query(max_length=8)] = None,
) -> HTMLResponse:
    """The live part of the workflow page (re-fetched as events arrive)."""
    page = await _page(request, who, workflow_id, events == "all")
    return render(request, "workflow_live.html", {"p": page, "all_events": events == "all"}, who)


@router.get("/workflows/{workflow_id}/stream")
async def workflow_stream(
    request: Request,
    who: User,
    workflow_id: WorkflowId,
    after: Annotated[int, Query(ge=0, le=2**62)] = 0,
) -> StreamingResponse:
    """The run's events as SSE (the JSON API's stream, with cookie sign-in)."""
    res = resources(request)
    async with res.db() as conn:
        if await workflow_tenant(conn, workflow_id) != who.tenant:
            raise Refused(404, not_found(workflow_id).detail)
    last = request.headers.get("last-event-id", "")
    resumed = parse_last_event_id(last) if last else None
    start = after if resumed is None else resumed
    pubsub = await open_subscription(res, workflow_id)
    return StreamingResponse(
        event_stream(
            res,
            pubsub,
            workflow_id,
            start,
            StreamAuth(session_token(request), who),
            request.url.path,
        ),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


@router.get("/workflows/{workflow_id}/step", response_class=HTMLResponse)
async def workflow_step(
    request: Request,
    who: User,
    workflow_id: WorkflowId,
    key: Annotated[str, Query(max_length=400)],
) -> HTMLResponse:
    """One step's input and output, pretty and cut (opened from the steps table)."""
    async with resources(request).db() as conn:
        if await workflow_tenant(conn, workflow_id) != who.tenant:
            raise Refused(404, not_found(workflow_id).detail)
        found, value_in = await step_value(conn, workflow_id, key, "input")
        _, value_out = await step_value(conn, workflow_id, key, "output")
    if not found:
        raise Refused(404, f"step {key!r} is not in workflow {workflow_id!r}")
    context = {
        "workflow_id": workflow_id,
        "key": key,
        "input": pretty(value_in),
        "output": pretty(value_out),
    }
    return render(request, "step_values.html", context, who)


@router.get("/workflows/{workflow_id}/value")
async def workflow_value(
    request: Request,
    who: User,
    workflow_id: WorkflowId,
    which: Annotated[str, Query(pattern=r"^(input|output)$")],
    step: Annotated[str | None, Query(max_length=400)] = None,
) -> JSONResponse:
    """A run's or a step's whole input or output as JSON (the page shows it cut)."""
    async with resources(request).db() as conn:
        detail = await get_workflow(conn, workflow_id, who.tenant)
        if detail is None:
            raise Refused(404, not_found(workflow_id).detail)
        if step is None:
            value = detail.input if which == "input" else detail.output
        else:
            found, value = await step_value(conn, workflow_id, step, which)
            if not found:
                raise Refused(404, f"step {step!r} is not in workflow {workflow_id!r}")
    return JSONResponse(value)
