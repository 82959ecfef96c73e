"""Command endpoints: each publishes one command to ``{p}.commands`` and answers 202.

The API never does the work itself. A request waits for the broker's acknowledgement (so a
202 means the command is in the log) but for no more than ``ApiConfig.command_timeout_s``:
Kafka being down is a 503, and a client that retries with the same workflow id or
Idempotency-Key cannot start a workflow twice (the orchestrator ignores a duplicate start).
"""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Header, Path, Request, Response

from kflow.api.apikeys import Principal, Scope
from kflow.api.auth import require, resources
from kflow.api.documents import first_not_ijson
from kflow.api.models import (
    SIGNAL_PATTERN,
    WORKFLOW_ID_PATTERN,
    Accepted,
    ReasonRequest,
    SignalRequest,
    StartWorkflowRequest,
)
from kflow.api.openapi_responses import COMMAND, problems
from kflow.api.problems import Problem, unavailable
from kflow.api.queries import latest_version, links, workflow_tenant
from kflow.api.resources import announce
from kflow.api.routes_read import not_found
from kflow.bus.commands import CommandNotDelivered
from kflow.bus.envelope import envelope_meta, workflow_id_for
from kflow.bus.topics import topic_names
from kflow.core.inputs import (
    CancelWorkflow,
    Input,
    PauseWorkflow,
    ResumeWorkflow,
    RetryWorkflow,
    SignalWorkflow,
    StartWorkflow,
)
from kflow.core.jsondoc import Json

router = APIRouter(tags=["commands"])
Writer = Annotated[Principal, Depends(require(Scope.WRITE))]
WorkflowId = Annotated[str, Path(pattern=WORKFLOW_ID_PATTERN, max_length=128)]
_LOCATION = {"Location": {"schema": {"type": "string"}, "description": "the workflow"}}
_START_RESPONSES = {
    **problems(*COMMAND),
    202: {"description": "the StartWorkflow command is in the log", "headers": _LOCATION},
}


def _invalid(field: str, message: str) -> Problem:
    return Problem(
        422, "invalid-request", "Invalid request", f"{field}: {message}",
        errors=[{"field": field, "message": message}],
    )  # fmt: skip


def _document(request: Request, what: str, value: object) -> Json:
    """``value`` as an I-JSON document within the size limit (its text made once, reused
    to publish); a 422 names the spot that is not I-JSON (ADR 0048)."""
    limit = resources(request).config.max_payload_bytes
    document = Json.of(value)
    try:
        size = document.measure()
    except ValueError as e:
        where = first_not_ijson(value, what) or (what, f"not a JSON document ({e})")
        raise _invalid(*where) from e
    # kflow's writer escapes a lone surrogate as \udXXX: look for it only then
    found = first_not_ijson(value, what) if "\\ud" in document.text else None
    if found is not None:
        raise _invalid(*found)
    if size > limit:
        raise Problem(
            413, "payload-too-large", "Payload too large",
            f"{what}: {size} bytes is over the limit of {limit}; pass a reference instead",
        )  # fmt: skip
    return document


async def _publish(
    request: Request, who: Principal, command: Input, idempotency_key: str | None = None
) -> Accepted:
    publisher = resources(request).commands
    try:
        meta = envelope_meta(
            command, actor=who.actor, tenant=who.tenant, idempotency_key=idempotency_key
        )
        await announce(resources(request), who)
        await publisher.publish_async(command, meta, who.signer)
    except CommandNotDelivered as e:
        advice = (
            f"no acknowledgement within {publisher.timeout_s:g} s; retry later (a start "
            "retried with the same workflow_id or Idempotency-Key does not start twice)"
        )
        raise unavailable("Kafka", e, advice) from e
    return Accepted(
        workflow_id=command.workflow_id,
        command=type(command).__name__,
        links=links(command.workflow_id),
    )


async def _visible(request: Request, who: Principal, workflow_id: str) -> None:
    async with resources(request).db() as conn:
        if await workflow_tenant(conn, workflow_id) != who.tenant:
            raise not_found(workflow_id)


IdempotencyKey = Annotated[
    str | None, Header(min_length=1, max_length=200, pattern=r"^[\x21-\x7e]+$")
]
"""``Idempotency-Key``: a retried command with the same key is applied once (ADR 0018)."""


@router.post("/workflows", status_code=202, response_model=Accepted, responses=_START_RESPONSES)
async def start(
    request: Request,
    response: Response,
    who: Writer,
    body: StartWorkflowRequest,
    idempotency_key: IdempotencyKey = None,
) -> Accepted:
    """Start a workflow (asynchronously); safe to retry with the same id or Idempotency-Key."""
    document = _document(request, "input", body.input)
    if body.workflow_id is not None:
        workflow_id = body.workflow_id
    elif idempotency_key is not None:
        workflow_id = workflow_id_for(who.tenant, idempotency_key)
    else:
        workflow_id = str(uuid.uuid4())
    async with resources(request).db() as conn:
        owner = await workflow_tenant(conn, workflow_id)
        version = body.version or await latest_version(conn, body.name)
    if owner is not None and owner != who.tenant:
        raise Problem(
            409, "conflict", "Conflict",
            f"workflow_id: {workflow_id!r} is taken; choose another id",
        )  # fmt: skip
    if version is None:
        raise Problem(
            422, "invalid-request", "Invalid request",
            f"version: no valid definition named {body.name!r} is registered; register one "
            "with `kflow definitions apply` (records that fail validation are refused; see "
            f"{topic_names(resources(request).config.topic_prefix).dlq})",
        )  # fmt: skip
    command = StartWorkflow(
        workflow_id=workflow_id,
        name=body.name,
        version=version,
        input=document,
        tenant=who.tenant,
        actor=who.actor,
    )
    accepted = await _publish(request, who, command, idempotency_key)
    response.headers["Location"] = accepted.links["self"]
    return accepted


@router.post(
    "/workflows/{workflow_id}/cancel",
    status_code=202,
    response_model=Accepted,
    responses=problems(*COMMAND),
)
async def cancel(
    request: Request,
    who: Writer,
    workflow_id: WorkflowId,
    body: ReasonRequest | None = None,
    idempotency_key: IdempotencyKey = None,
) -> Accepted:
    """Cancel the workflow; running steps are marked cancelled (a retry with the same
    Idempotency-Key is applied once)."""
    await _visible(request, who, workflow_id)
    reason = body.reason if body else ""
    command = CancelWorkflow(workflow_id=workflow_id, reason=reason)
    return await _publish(request, who, command, idempotency_key)


@router.post(
    "/workflows/{workflow_id}/pause",
    status_code=202,
    response_model=Accepted,
    responses=problems(*COMMAND),
)
async def pause(
    request: Request,
    who: Writer,
    workflow_id: WorkflowId,
    body: ReasonRequest | None = None,
    idempotency_key: IdempotencyKey = None,
) -> Accepted:
    """Stop scheduling new steps until resumed (a retry with the same Idempotency-Key is
    applied once)."""
    await _visible(request, who, workflow_id)
    reason = body.reason if body else ""
    command = PauseWorkflow(workflow_id=workflow_id, reason=reason)
    return await _publish(request, who, command, idempotency_key)


@router.post(
    "/workflows/{workflow_id}/resume",
    status_code=202,
    response_model=Accepted,
    responses=problems(*COMMAND),
)
async def resume(
    request: Request, who: Writer, workflow_id: WorkflowId, idempotency_key: IdempotencyKey = None
) -> Accepted:
    """Resume a paused workflow (a retry with the same Idempotency-Key is applied once)."""
    await _visible(request, who, workflow_id)
    return await _publish(request, who, ResumeWorkflow(workflow_id=workflow_id), idempotency_key)


@router.post(
    "/workflows/{workflow_id}/retry",
    status_code=202,
    response_model=Accepted,
    responses=problems(*COMMAND),
)
async def retry(
    request: Request,
    who: Writer,
    workflow_id: WorkflowId,
    body: ReasonRequest | None = None,
    idempotency_key: IdempotencyKey = None,
) -> Accepted:
    """Reopen a failed or cancelled run: its failed and cancelled steps run again as their
    next attempt, completed steps keep their results (ADR 0082; a retry with the same
    Idempotency-Key is applied once)."""
    await _visible(request, who, workflow_id)
    reason = body.reason if body else ""
    command = RetryWorkflow(workflow_id=workflow_id, reason=reason)
    return await _publish(request, who, command, idempotency_key)


@router.post(
    "/workflows/{workflow_id}/signals/{name}",
    status_code=202,
    response_model=Accepted,
    responses=problems(*COMMAND),
)
async def signal(
    request: Request,
    who: Writer,
    workflow_id: WorkflowId,
    name: Annotated[str, Path(pattern=SIGNAL_PATTERN, max_length=128)],
    body: SignalRequest,
    idempotency_key: IdempotencyKey = None,
) -> Accepted:
    """Deliver a signal (e.g. an approval) to a waiting step (a retry with the same
    Idempotency-Key is applied once)."""
    payload = _document(request, "payload", body.payload)
    await _visible(request, who, workflow_id)
    command = SignalWorkflow(workflow_id=workflow_id, name=name, payload=payload)
    return await _publish(request, who, command, idempotency_key)
