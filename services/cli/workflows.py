"""``kflow start|signal|pause|resume|cancel|events``: drive and inspect one workflow."""

from __future__ import annotations

import hmac
import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.live import Live
from rich.table import Table

from kflow.bus.credentials import signer_from_settings
from kflow.bus.principals import lookup_key
from kflow.bus.topics import topic_names
from kflow.cli.broker import require_broker
from kflow.client import Client, WorkflowHandle
from kflow.core.access import tenant_of
from kflow.core.errors import KflowError
from kflow.core.events import Event, StepEvent, WorkflowCompleted, WorkflowStarted, event_to_dict
from kflow.core.jsondoc import dumps
from kflow.settings import get_settings

_SKIP_FIELDS = {"type", "workflow_id", "seq", "at", "step_key", "attempt", "cause", "definition"}
T = TypeVar("T")


def _json(text: str | None, option: str) -> Any:
    if text is None:
        return None
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        typer.echo(
            f"error: {option} is not valid JSON ({e.msg} at column {e.colno}): {text}", err=True
        )
        raise typer.Exit(2) from e


@contextmanager
def _client(actor: str | None) -> Iterator[Client]:
    """A Client on the configured broker; any kflow error becomes one line and exit 1."""
    settings = require_broker()
    try:
        with Client(settings, actor=actor) as client:
            yield client
    except KflowError as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(1) from e


def _send(workflow_id: str, actor: str | None, send: Callable[[WorkflowHandle], T]) -> T:
    with _client(actor) as client:
        return send(client.get_handle(workflow_id))


ActorOption = Annotated[str | None, typer.Option(help="who asks (recorded in the envelope)")]


def start(
    name: Annotated[str, typer.Argument(help="workflow definition name")],
    input: Annotated[str | None, typer.Option("--input", help="workflow input as JSON")] = None,
    workflow_id: Annotated[
        str | None, typer.Option("--id", help="workflow id [default: UUID]")
    ] = None,
    version: Annotated[int, typer.Option(min=0, help="definition version; 0 = latest")] = 0,
    wait: Annotated[bool, typer.Option("--wait", help="follow progress until it ends")] = False,
    actor: ActorOption = "cli",
) -> None:
    """Start a workflow (publishes StartWorkflow to the commands topic).

    Example: kflow start docpipe --input '{"doc_id": "d-1"}' --id doc-1 --wait
    """
    value = _json(input, "--input")
    with _client(actor) as client:
        handle = client.start(name, value, id=workflow_id, version=version)
        typer.echo(f"started {handle.workflow_id}")
        if wait:
            code = _follow(handle)
            raise typer.Exit(code)


def _follow(handle: WorkflowHandle) -> int:
    """Show step progress live until the workflow ends; exit code 0 only when it completed."""
    workflow_id = handle.workflow_id
    steps: dict[str, str] = {}
    last: Event | None = None

    def render() -> Table:
        table = Table(title=f"workflow {workflow_id}: {type(last).__name__ if last else 'waiting'}")
        table.add_column("step")
        table.add_column("status")
        for key, status in steps.items():
            table.add_row(key.removeprefix(workflow_id + "/"), status)
        return table

    with Live(render(), console=Console(stderr=True), refresh_per_second=8) as live:
        for event in handle.events():
            last = event
            if isinstance(event, StepEvent):
                steps[event.step_key] = type(event).__name__.removeprefix("Step")
            live.update(render())
    assert last is not None  # events() ends with the final event
    summary = {k: v for k, v in event_to_dict(last).items() if k not in _SKIP_FIELDS}
    typer.echo(f"{type(last).__name__} {dumps(summary)}")
    return 0 if isinstance(last, WorkflowCompleted) else 1


def signal(
    workflow_id: Annotated[str, typer.Argument(help="workflow id")],
    name: Annotated[str, typer.Argument(help="waiting step's node id (map child: node[i])")],
    payload: Annotated[
        str, typer.Option(help='JSON payload, e.g. {"approved": true}')
    ] = '{"approved": true}',
    actor: ActorOption = "cli",
) -> None:
    """Send a signal to a waiting step (approval, or a step awaiting review).

    Example: kflow signal doc-1 review --payload '{"approved": true}'
    """
    value = _json(payload, "--payload")
    _send(workflow_id, actor, lambda handle: handle.signal(name, value))
    typer.echo(f"signalled {workflow_id}/{name}")


def pause(
    workflow_id: Annotated[str, typer.Argument(help="workflow id")],
    reason: Annotated[str, typer.Option(help="why (recorded)")] = "",
    actor: ActorOption = "cli",
) -> None:
    """Pause a workflow: no new steps are scheduled until it is resumed.

    Example: kflow pause doc-1 --reason "waiting for the vendor"
    """
    _send(workflow_id, actor, lambda handle: handle.pause(reason))
    typer.echo(f"pause requested for {workflow_id}")


def resume(
    workflow_id: Annotated[str, typer.Argument(help="workflow id")],
    actor: ActorOption = "cli",
) -> None:
    """Resume a paused workflow.

    Example: kflow resume doc-1
    """
    _send(workflow_id, actor, lambda handle: handle.resume())
    typer.echo(f"resume requested for {workflow_id}")


def cancel(
    workflow_id: Annotated[str, typer.Argument(help="workflow id")],
    reason: Annotated[str, typer.Option(help="why (recorded)")] = "",
    actor: ActorOption = "cli",
) -> None:
    """Cancel a workflow; running steps are marked cancelled.

    Example: kflow cancel doc-1 --reason "duplicate upload"
    """
    _send(workflow_id, actor, lambda handle: handle.cancel(reason))
    typer.echo(f"cancel requested for {workflow_id}")


def events(
    workflow_id: Annotated[str, typer.Argument(help="workflow id")],
    as_json: Annotated[bool, typer.Option("--json", help="one JSON object per line")] = False,
    follow: Annotated[
        bool, typer.Option("--follow", help="print events as they happen, until it ends")
    ] = False,
) -> None:
    """Print one workflow's events from the event log.

    Example: kflow events doc-1
    """
    settings = get_settings()
    topic = topic_names(settings.topic_prefix).events
    tenant = _own_tenant()
    if tenant is not None:  # signed in: only this tenant's workflows are shown
        history = _send(workflow_id, None, lambda handle: list(handle.events(follow=False)))
        if not _belongs_to(history, tenant):
            typer.echo(
                f"error: no events for workflow {workflow_id!r} of tenant {tenant!r} in {topic}",
                err=True,
            )
            raise typer.Exit(1)
    if follow:
        found = _send(workflow_id, None, lambda handle: _print_live(handle, as_json))
    else:
        found = _send(workflow_id, None, lambda handle: list(handle.events(follow=False)))
    if not found:
        typer.echo(f"error: no events for workflow {workflow_id!r} in {topic}", err=True)
        raise typer.Exit(1)
    if follow:
        return
    if as_json:
        for event in found:
            typer.echo(dumps(event_to_dict(event)))
        return
    table = Table(title=f"events of {workflow_id}")
    for column in ("seq", "type", "step", "attempt", "details"):
        table.add_column(column, overflow="fold")
    for event in found:
        step, attempt, text = _columns(event)
        table.add_row(str(event.seq), type(event).__name__, step, attempt, text)
    Console(width=180).print(table)


def _own_tenant() -> str | None:
    """The tenant of the configured API key (None: no key configured).

    A courtesy for people sharing one CLI machine: a process that can read the events
    topic can read every tenant's events; Kafka ACLs are what enforce it (docs/security.md).
    """
    settings = get_settings()
    try:
        signer = signer_from_settings(settings)
        if signer is None:
            return None
        key = lookup_key(settings.kafka_bootstrap, settings.topic_prefix, signer.key_id)
    except KflowError as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(1) from e
    if key is None or not hmac.compare_digest(key.signing_key, signer.key):
        typer.echo(
            f"error: API key {signer.key_id} is unknown or revoked; create one with "
            "kflow apikey create",
            err=True,
        )
        raise typer.Exit(1)
    return key.tenant


def _belongs_to(history: list[Event], tenant: str) -> bool:
    started = next((e for e in history if isinstance(e, WorkflowStarted)), None)
    return started is not None and tenant_of(started.tenant) == tenant


def _columns(event: Event) -> tuple[str, str, str]:
    """The step (without the workflow id), attempt and details of one event's row."""
    data = event_to_dict(event)
    step = data.get("step_key", "")
    details = dumps({k: v for k, v in data.items() if k not in _SKIP_FIELDS})
    return (
        step.removeprefix(event.workflow_id + "/") if step else "",
        str(data.get("attempt", "")),
        details if len(details) < 120 else details[:117] + "...",
    )


def _print_live(handle: WorkflowHandle, as_json: bool) -> list[Event]:
    """Print each event as it happens (one line each) until the final one."""
    found: list[Event] = []
    for event in handle.events():
        found.append(event)
        if as_json:
            typer.echo(dumps(event_to_dict(event)))
        else:
            step, attempt, text = _columns(event)
            typer.echo(f"{event.seq:>4} {type(event).__name__:<24} {step} {attempt} {text}")
    return found


def register(app: typer.Typer) -> None:
    """Add the workflow commands at the top level."""
    for command in (start, signal, pause, resume, cancel, events):
        app.command(command.__name__)(command)
