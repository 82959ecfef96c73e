"""Command buttons: each posts an ordinary command through the JSON API's own handlers.

A post is checked (Origin, CSRF, write scope), confirmed (``hx-confirm`` in the browser, or a
confirmation page without JavaScript), published by the same function ``POST
/workflows/{id}/cancel`` etc. runs, and answered with the event it led to: the event the
command caused, or the notice refusing it, read back from the read model.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Request
from fastapi.responses import HTMLResponse
from pydantic import ValidationError

from kflow.api import routes_commands
from kflow.api.apikeys import Principal, Scope
from kflow.api.auth import resources
from kflow.api.console.queries import command_outcome, last_seq
from kflow.api.console.render import ConsoleRoute, render
from kflow.api.console.session import Refused, require_scope, signed_in, verified_form
from kflow.api.models import SIGNAL_PATTERN, Accepted, EventView, ReasonRequest, SignalRequest
from kflow.api.problems import Problem
from kflow.api.routes_read import WorkflowId

router = APIRouter(prefix="/ui", route_class=ConsoleRoute, include_in_schema=False)
User = Annotated[Principal, Depends(signed_in)]
OUTCOME_WAIT_S = 5.0
_POLL_S = 0.1
COMMANDS = {
    "cancel": ("CancelWorkflow", "Cancel"),
    "pause": ("PauseWorkflow", "Pause"),
    "resume": ("ResumeWorkflow", "Resume"),
    "signal": ("SignalWorkflow", "Send signal"),
    "retry": ("RetryWorkflow", "Retry"),
}


async def _publish(
    request: Request, who: Principal, workflow_id: str, action: str, form: dict[str, str]
) -> Accepted:
    try:
        if action == "cancel":
            return await routes_commands.cancel(
                request, who, workflow_id, ReasonRequest(reason=form.get("reason", ""))
            )
        if action == "pause":
            return await routes_commands.pause(
                request, who, workflow_id, ReasonRequest(reason=form.get("reason", ""))
            )
        if action == "resume":
            return await routes_commands.resume(request, who, workflow_id)
        if action == "retry":
            return await routes_commands.retry(
                request, who, workflow_id, ReasonRequest(reason=form.get("reason", ""))
            )
    except ValidationError as e:
        raise Refused(422, f"reason: {e.errors()[0]['msg']}") from e
    name = form.get("name", "").strip()
    if not re.fullmatch(SIGNAL_PATTERN, name):
        raise Refused(422, "signal name: give the waiting step's key, e.g. approve or review[2]")
    try:
        payload = json.loads(form.get("payload") or "null")
    except json.JSONDecodeError as e:
        raise Refused(
            422,
            f"payload: not JSON ({e.msg} at line {e.lineno} column {e.colno});"
            ' give e.g. {"approved": true}',
        ) from e
    return await routes_commands.signal(
        request, who, workflow_id, name, SignalRequest(payload=payload)
    )


async def _outcome(
    request: Request, who: Principal, workflow_id: str, command: str, before: int, since: datetime
) -> list[EventView]:
    deadline = time.monotonic() + OUTCOME_WAIT_S
    res = resources(request)
    while True:
        async with res.db() as conn:
            found = await command_outcome(conn, workflow_id, command, before, who.actor, since)
        if found or time.monotonic() > deadline:
            return found
        await asyncio.sleep(_POLL_S)


@router.post("/workflows/{workflow_id}/{action}", response_class=HTMLResponse)
async def act(
    request: Request,
    who: User,
    workflow_id: WorkflowId,
    action: Annotated[str, Path(pattern=r"^(cancel|pause|resume|signal|retry)$")],
) -> HTMLResponse:
    """Confirm, publish, and show the resulting event (or why the command was refused)."""
    form = await verified_form(request)
    require_scope(who, Scope.WRITE)
    command, label = COMMANDS[action]
    htmx = request.headers.get("hx-request") == "true"
    context: dict[str, Any] = {
        "workflow_id": workflow_id,
        "action": action,
        "command": command,
        "label": label,
        "form": form,
    }
    if form.get("confirmed") != "yes":
        return render(request, "confirm.html", {**context, "nav": "workflows"}, who)
    async with resources(request).db() as conn:
        before = await last_seq(conn, workflow_id)
    since = datetime.now(UTC) - timedelta(seconds=1)
    try:
        await _publish(request, who, workflow_id, action, form)
    except Problem as e:
        outcome = {**context, "published": False, "refusal": e.detail, "events": []}
        return render(
            request, "outcome.html" if htmx else "outcome_page.html", outcome, who, e.status
        )
    events = await _outcome(request, who, workflow_id, command, before, since)
    outcome = {
        **context,
        "published": True,
        "refusal": None,
        "events": events,
        "waited": OUTCOME_WAIT_S,
    }
    return render(
        request,
        "outcome.html" if htmx else "outcome_page.html",
        {**outcome, "nav": "workflows"},
        who,
    )
