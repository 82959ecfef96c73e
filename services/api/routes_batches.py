"""``/batches``: one action on many workflows (cancel, pause, resume, signal, retry; ADR 0084)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Request
from pydantic import BaseModel, ConfigDict, Field

from kflow.api import batches
from kflow.api.apikeys import Principal, Scope
from kflow.api.auth import require, resources
from kflow.api.models import NAME_PATTERN, WORKFLOW_ID_PATTERN
from kflow.api.openapi_responses import COMMAND, ONE_WORKFLOW, problems
from kflow.api.problems import Problem, unavailable
from kflow.api.resources import announce
from kflow.bus.commands import CommandNotDelivered

router = APIRouter(tags=["batches"])
Writer = Annotated[Principal, Depends(require(Scope.WRITE))]
Reader = Annotated[Principal, Depends(require(Scope.READ))]


class BatchFilter(BaseModel):
    """Everything matching these list filters (as ``GET /workflows`` takes them)."""

    model_config = ConfigDict(extra="forbid")

    status: str | None = Field(None, pattern=r"^[a-z_]{1,32}$")
    name: str | None = Field(None, pattern=NAME_PATTERN)
    q: str | None = Field(None, max_length=128, description="part of the workflow id")
    created_after: str | None = Field(None, max_length=40)
    created_before: str | None = Field(None, max_length=40)


class BatchRequestBody(BaseModel):
    """One action for the listed workflows, or for every workflow matching ``filter``.

    Sending the same body again (or the same ``idempotency_key``) returns the same batch and
    publishes only what was not published yet."""

    model_config = ConfigDict(extra="forbid")

    action: str = Field(pattern=r"^(cancel|pause|resume|signal|retry)$")
    workflow_ids: list[Annotated[str, Field(pattern=WORKFLOW_ID_PATTERN, max_length=128)]] = Field(
        default_factory=list, max_length=batches.MAX_BATCH
    )
    filter: BatchFilter | None = None
    reason: str = Field("", max_length=1000)
    signal_name: str = Field("", max_length=128)
    payload: Any = None
    idempotency_key: str | None = Field(None, max_length=200)


class ItemView(BaseModel):
    workflow_id: str
    state: str
    """not_found, unpublished, pending, applied or refused."""
    event: str | None = None
    seq: int | None = None
    detail: str = ""


class BatchOut(BaseModel):
    """A batch: what it does, to how many workflows, how far it got, and each outcome."""

    batch_id: str
    action: str
    args: dict[str, Any]
    selection: dict[str, Any]
    actor: str
    total: int
    counts: dict[str, int]
    done: bool
    items: list[ItemView]
    links: dict[str, str]


def request_of(body: BatchRequestBody) -> batches.BatchRequest:
    """The batch request of a validated body; refuses an empty selection."""
    if not body.workflow_ids and body.filter is None:
        raise Problem(
            422, "invalid-request", "Invalid request",
            "workflow_ids or filter: select workflows by id, or give a filter (e.g. status)",
        )  # fmt: skip
    f = body.filter or BatchFilter()
    selection = batches.Selection(
        tuple(body.workflow_ids), f.status, f.name, f.q, f.created_after, f.created_before
    )
    return batches.BatchRequest(
        body.action, selection, body.reason, body.signal_name, body.payload, body.idempotency_key
    )


async def submit(request: Request, who: Principal, req: batches.BatchRequest) -> str:
    """Create (or find again) the batch and publish its commands; problems on failure."""
    res = resources(request)
    try:
        await announce(res, who)
        async with res.db() as conn:
            return await batches.submit(conn, res.commands, who.tenant, who.actor, req, who.signer)
    except batches.BatchError as e:
        raise Problem(422, "invalid-request", "Invalid request", str(e)) from e
    except CommandNotDelivered as e:
        raise unavailable("Kafka", e, "send the same batch again: nothing runs twice") from e


async def view(request: Request, who: Principal, batch_id: str) -> batches.BatchView:
    """The batch of this tenant, or a 404 problem."""
    async with resources(request).db() as conn:
        found = await batches.read_batch(conn, batch_id, who.tenant)
    if found is None:
        raise Problem(404, "not-found", "Not found", f"no batch {batch_id} in this tenant")
    return found


def out_of(b: batches.BatchView) -> BatchOut:
    return BatchOut(
        batch_id=b.batch_id, action=b.action, args=b.args, selection=b.selection,
        actor=b.actor, total=b.total, counts=b.counts, done=b.done,
        items=[ItemView(**vars_of(i)) for i in b.items],
        links={"self": f"/batches/{b.batch_id}", "console": f"/ui/batches/{b.batch_id}"},
    )  # fmt: skip


def vars_of(item: batches.ItemOutcome) -> dict[str, Any]:
    return {"workflow_id": item.workflow_id, "state": item.state, "event": item.event,
            "seq": item.seq, "detail": item.detail}  # fmt: skip


BatchId = Annotated[str, Path(pattern=r"^[0-9a-f-]{36}$")]


@router.post("/batches", status_code=202, response_model=BatchOut, responses=problems(*COMMAND))
async def create_batch(request: Request, who: Writer, body: BatchRequestBody) -> BatchOut:
    """Publish one command per selected workflow; answers with the batch's progress."""
    batch_id = await submit(request, who, request_of(body))
    return out_of(await view(request, who, batch_id))


@router.get("/batches/{batch_id}", response_model=BatchOut, responses=problems(*ONE_WORKFLOW))
async def get_batch(request: Request, who: Reader, batch_id: BatchId) -> BatchOut:
    """A batch's progress and per-workflow outcome."""
    return out_of(await view(request, who, batch_id))
