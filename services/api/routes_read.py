"""Read endpoints: list, one execution, its events, its live stream, definitions."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Header, Path, Query, Request
from fastapi.responses import StreamingResponse
from pydantic import BeforeValidator

from kflow.api.apikeys import Principal, Scope
from kflow.api.auth import bearer_token, require, resources
from kflow.api.models import (
    NAME_PATTERN,
    WORKFLOW_ID_PATTERN,
    DefinitionView,
    EventPage,
    WorkflowDetail,
    WorkflowPage,
)
from kflow.api.openapi_responses import ONE_WORKFLOW, READ, problems
from kflow.api.problems import Problem
from kflow.api.queries import (
    ListFilter,
    get_workflow,
    list_events,
    list_workflows,
    workflow_tenant,
)
from kflow.api.stream import (
    LAST_EVENT_ID_PATTERN,
    MAX_SEQ,
    event_stream,
    open_subscription,
    parse_last_event_id,
)
from kflow.api.streamauth import StreamAuth

router = APIRouter(tags=["workflows"])
Reader = Annotated[Principal, Depends(require(Scope.READ))]
WorkflowId = Annotated[str, Path(pattern=WORKFLOW_ID_PATTERN, max_length=128)]
STATUS_PATTERN = r"^[a-z_]{1,32}$"


SSE_MESSAGE = {
    "type": "object",
    "description": "one SSE message: an event (id = seq, event = its type, data = the event "
    "as JSON), or the last one, 'unauthorized' (data = a problem), when the key is revoked",
    "properties": {
        "id": {"type": "string"},
        "event": {"type": "string"},
        "data": {"type": "string"},
    },
    "required": ["event", "data"],
}


def _iso_time(value: object) -> object:
    """Refuse what pydantic would read as a Unix time (``0.5``): the filters are RFC 3339."""
    if isinstance(value, str) and not re.match(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}", value):
        raise ValueError("give an RFC 3339 time, e.g. 2026-01-01T00:00:00Z")
    return value


Time = Annotated[datetime, BeforeValidator(_iso_time)]


def not_found(workflow_id: str) -> Problem:
    return Problem(
        404, "not-found", "Not found",
        f"no workflow {workflow_id!r} is visible to this key (it may not be projected yet)",
    )  # fmt: skip


@router.get("/workflows", response_model=WorkflowPage, responses=problems(*READ))
async def get_workflows(
    request: Request,
    who: Reader,
    status: Annotated[str | None, Query(pattern=STATUS_PATTERN)] = None,
    name: Annotated[str | None, Query(pattern=NAME_PATTERN)] = None,
    tenant: Annotated[str | None, Query(max_length=64)] = None,
    created_after: Time | None = None,
    created_before: Time | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: Annotated[str | None, Query(max_length=400)] = None,
) -> WorkflowPage:
    """Executions of the caller's tenant, newest first (keyset pagination)."""
    if tenant is not None and tenant != who.tenant:
        raise Problem(
            403, "forbidden", "Forbidden",
            f"tenant: this key belongs to tenant {who.tenant!r} and cannot list {tenant!r}",
        )  # fmt: skip
    for label, value in (("created_after", created_after), ("created_before", created_before)):
        if value is not None and value.tzinfo is None:
            raise Problem(
                400, "invalid-request", "Invalid request",
                f"{label}: give a time zone, e.g. 2026-01-01T00:00:00Z",
            )  # fmt: skip
    flt = ListFilter(who.tenant, status, name, created_after, created_before, limit, cursor)
    async with resources(request).db() as conn:
        items, nxt = await list_workflows(conn, flt)
    return WorkflowPage(items=items, next_cursor=nxt)


@router.get(
    "/workflows/{workflow_id}", response_model=WorkflowDetail, responses=problems(*ONE_WORKFLOW)
)
async def get_one(request: Request, who: Reader, workflow_id: WorkflowId) -> WorkflowDetail:
    """One execution with its steps."""
    async with resources(request).db() as conn:
        found = await get_workflow(conn, workflow_id, who.tenant)
    if found is None:
        raise not_found(workflow_id)
    return found


@router.get(
    "/workflows/{workflow_id}/events", response_model=EventPage, responses=problems(*ONE_WORKFLOW)
)
async def get_events(
    request: Request,
    who: Reader,
    workflow_id: WorkflowId,
    after_seq: Annotated[int, Query(ge=0, le=2**62)] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
) -> EventPage:
    """The execution's audit trail in seq order."""
    async with resources(request).db() as conn:
        if await workflow_tenant(conn, workflow_id) != who.tenant:
            raise not_found(workflow_id)
        items = await list_events(conn, workflow_id, after_seq, limit)
    nxt = items[-1].seq if len(items) == limit else None
    return EventPage(items=items, next_after_seq=nxt)


@router.get(
    "/workflows/{workflow_id}/stream",
    responses={
        **problems(*ONE_WORKFLOW),
        200: {"content": {"text/event-stream": {"schema": SSE_MESSAGE}}},
    },
    response_class=StreamingResponse,
)
async def stream(
    request: Request,
    who: Reader,
    workflow_id: WorkflowId,
    last_event_id: Annotated[
        str,
        Header(
            max_length=20,
            description="resume after this seq (the id of the last event received)",
            json_schema_extra={"pattern": LAST_EVENT_ID_PATTERN},
        ),
    ] = "",
) -> StreamingResponse:
    """Server-sent events: each event once, in order, with its seq as the SSE id.

    The stream ends after the workflow's terminal event, or with an ``unauthorized``
    message (a problem JSON as its data) once the API key is revoked."""
    after = 0
    if last_event_id:
        parsed = parse_last_event_id(last_event_id)
        if parsed is None:
            raise Problem(
                400, "invalid-request", "Invalid request",
                "Last-Event-ID: send the id of the last event received (a whole number, "
                f"at most {MAX_SEQ})",
            )  # fmt: skip
        after = parsed
    res = resources(request)
    async with res.db() as conn:
        if await workflow_tenant(conn, workflow_id) != who.tenant:
            raise not_found(workflow_id)
    pubsub = await open_subscription(res, workflow_id)
    return StreamingResponse(
        event_stream(
            res,
            pubsub,
            workflow_id,
            after,
            StreamAuth(bearer_token(request), who),
            request.url.path,
        ),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


@router.get("/definitions", response_model=list[DefinitionView], responses=problems(*READ))
async def definitions(request: Request, who: Reader) -> list[DefinitionView]:
    """Registered workflow definitions (from the compacted definitions topic)."""
    async with resources(request).db() as conn:
        rows = await (
            await conn.execute("SELECT name, version, definition FROM definitions ORDER BY 1, 2")
        ).fetchall()
    return [DefinitionView(name=r[0], version=r[1], definition=r[2]) for r in rows]
