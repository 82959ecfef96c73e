"""Bulk actions from the list page: confirm, submit as a batch, follow its progress (ADR 0084)."""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from kflow.api import batches, routes_batches
from kflow.api.apikeys import Principal, Scope
from kflow.api.console.render import ConsoleRoute, render
from kflow.api.console.session import Refused, require_scope, signed_in, verified_form
from kflow.api.problems import Problem

router = APIRouter(prefix="/ui", route_class=ConsoleRoute, include_in_schema=False)
User = Annotated[Principal, Depends(signed_in)]
_FILTER_FIELDS = ("status", "name", "q", "after", "before")


def request_of(form: dict[str, str]) -> batches.BatchRequest:
    """The batch a posted bulk form asks for; ``Refused`` names the field to fix."""
    action = form.get("action", "")
    if action not in batches.ACTIONS:
        raise Refused(422, f"action: pick one of {', '.join(batches.ACTIONS)}")
    if form.get("scope") == "filter":
        f = {k: form.get(f"f_{k}") or None for k in _FILTER_FIELDS}
        if not any(f.values()):
            raise Refused(
                422, "filter: set at least one filter (status, name, id, time) to act on"
                " everything matching it, or select workflows",
            )  # fmt: skip
        selection = batches.Selection((), f["status"], f["name"], f["q"], f["after"], f["before"])
    else:
        ids = tuple(k.removeprefix("wf-") for k in form if k.startswith("wf-"))
        if not ids:
            raise Refused(422, "select at least one workflow (the boxes on the left)")
        selection = batches.Selection(ids)
    payload: Any = None
    if action == "signal":
        try:
            payload = json.loads(form.get("payload") or '{"approved": true}')
        except json.JSONDecodeError as e:
            raise Refused(
                422, f'payload: not JSON ({e.msg}); give e.g. {{"approved": true}}'
            ) from e
    return batches.BatchRequest(
        action, selection, form.get("reason", ""), form.get("signal_name", "").strip(), payload
    )


@router.post("/batches", response_class=HTMLResponse)
async def create(request: Request, who: User) -> Response:
    """Confirm the bulk action (count and selection), then submit it and show its page."""
    form = await verified_form(request)
    require_scope(who, Scope.WRITE)
    req = request_of(form)
    try:
        req.check()
    except batches.BatchError as e:
        raise Refused(422, str(e)) from e
    if form.get("confirmed") != "yes":
        context = {
            "nav": "workflows", "req": req, "form": form,
            "count": len(req.selection.workflow_ids),
        }  # fmt: skip
        return render(request, "batch_confirm.html", context, who)
    try:
        batch_id = await routes_batches.submit(request, who, req)
    except Problem as e:
        raise Refused(e.status, e.detail) from e
    return RedirectResponse(f"/ui/batches/{batch_id}", status_code=303)


@router.get("/batches/{batch_id}", response_class=HTMLResponse)
async def show(
    request: Request, who: User, batch_id: Annotated[str, Path(pattern=r"^[0-9a-f-]{36}$")]
) -> HTMLResponse:
    """The batch's progress and each workflow's outcome (refreshes itself until done)."""
    try:
        batch = await routes_batches.view(request, who, batch_id)
    except Problem as e:
        raise Refused(e.status, e.detail) from e
    part = request.headers.get("hx-request") == "true"
    context = {"nav": "workflows", "b": batch}
    return render(request, "batch_part.html" if part else "batch.html", context, who)
