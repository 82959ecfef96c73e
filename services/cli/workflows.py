"""``kflow start|signal|pause|resume|cancel|events``: drive and inspect one workflow."""

from __future__ import annotations

import json
import uuid
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.live import Live
from rich.table import Table

from kflow.cli.broker import require_broker
from kflow.core.events import Event, StepEvent, event_to_dict
from kflow.core.inputs import (
    CancelWorkflow,
    Input,
    PauseWorkflow,
    ResumeWorkflow,
    SignalWorkflow,
    StartWorkflow,
)
from kflow.core.jsondoc import dumps
from kflow.orchestrator.client import ClientError, CommandPublisher, EventReader, is_final
from kflow.settings import get_settings

_SKIP_FIELDS = {"type", "workflow_id", "seq", "at", "step_key", "attempt", "cause", "definition"}


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


def _send(command: Input, actor: str | None) -> None:
    require_broker()
    settings = get_settings()
    try:
        publisher = CommandPublisher(settings.kafka_bootstrap, settings.topic_prefix, actor)
        publisher.send(command)
        publisher.flush()
    except ClientError as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(1) from e


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
    workflow_id = workflow_id or str(uuid.uuid4())
    reader = _reader(from_end=True, workflow_id=workflow_id) if wait else None
    _send(StartWorkflow(workflow_id=workflow_id, name=name, version=version, input=value), actor)
    typer.echo(f"started {workflow_id}")
    if reader is not None:
        code = _follow(reader, workflow_id)
        raise typer.Exit(code)


def _reader(from_end: bool, workflow_id: str | None = None) -> EventReader:
    require_broker()
    settings = get_settings()
    try:
        return EventReader(
            settings.kafka_bootstrap, settings.topic_prefix, from_end, workflow_id=workflow_id
        )
    except ClientError as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(1) from e


def _follow(reader: EventReader, workflow_id: str) -> int:
    """Show step progress live until the workflow ends; exit code 0 only when it completed."""
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
        for logged in reader.follow(
            lambda e: e.event.workflow_id == workflow_id and is_final(e.event)
        ):
            event = logged.event
            if event.workflow_id != workflow_id:
                continue
            last = event
            if isinstance(event, StepEvent):
                steps[event.step_key] = type(event).__name__.removeprefix("Step")
            live.update(render())
    reader.close()
    assert last is not None
    summary = {k: v for k, v in event_to_dict(last).items() if k not in _SKIP_FIELDS}
    typer.echo(f"{type(last).__name__} {dumps(summary)}")
    return 0 if type(last).__name__ == "WorkflowCompleted" else 1


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
    _send(
        SignalWorkflow(workflow_id=workflow_id, name=name, payload=_json(payload, "--payload")),
        actor,
    )
    typer.echo(f"signalled {workflow_id}/{name}")


def pause(
    workflow_id: Annotated[str, typer.Argument(help="workflow id")],
    reason: Annotated[str, typer.Option(help="why (recorded)")] = "",
    actor: ActorOption = "cli",
) -> None:
    """Pause a workflow: no new steps are scheduled until it is resumed.

    Example: kflow pause doc-1 --reason "waiting for the vendor"
    """
    _send(PauseWorkflow(workflow_id=workflow_id, reason=reason), actor)
    typer.echo(f"pause requested for {workflow_id}")


def resume(
    workflow_id: Annotated[str, typer.Argument(help="workflow id")],
    actor: ActorOption = "cli",
) -> None:
    """Resume a paused workflow.

    Example: kflow resume doc-1
    """
    _send(ResumeWorkflow(workflow_id=workflow_id), actor)
    typer.echo(f"resume requested for {workflow_id}")


def cancel(
    workflow_id: Annotated[str, typer.Argument(help="workflow id")],
    reason: Annotated[str, typer.Option(help="why (recorded)")] = "",
    actor: ActorOption = "cli",
) -> None:
    """Cancel a workflow; running steps are marked cancelled.

    Example: kflow cancel doc-1 --reason "duplicate upload"
    """
    _send(CancelWorkflow(workflow_id=workflow_id, reason=reason), actor)
    typer.echo(f"cancel requested for {workflow_id}")


def events(
    workflow_id: Annotated[str, typer.Argument(help="workflow id")],
    as_json: Annotated[bool, typer.Option("--json", help="one JSON object per line")] = False,
) -> None:
    """Print one workflow's events from the event log.

    Example: kflow events doc-1
    """
    reader = _reader(from_end=False, workflow_id=workflow_id)
    try:
        found = [
            logged.event
            for logged in reader.read_to_end()
            if logged.event.workflow_id == workflow_id
        ]
    except ClientError as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(1) from e
    finally:
        reader.close()
    if not found:
        typer.echo(f"error: no events for workflow {workflow_id!r} in {reader.topic}", err=True)
        raise typer.Exit(1)
    if as_json:
        for event in found:
            typer.echo(dumps(event_to_dict(event)))
        return
    table = Table(title=f"events of {workflow_id}")
    for column in ("seq", "type", "step", "attempt", "details"):
        table.add_column(column, overflow="fold")
    for event in found:
        data = event_to_dict(event)
        step = data.get("step_key", "")
        details = {k: v for k, v in data.items() if k not in _SKIP_FIELDS}
        text = dumps(details)
        table.add_row(
            str(event.seq),
            type(event).__name__,
            step.removeprefix(workflow_id + "/") if step else "",
            str(data.get("attempt", "")),
            text if len(text) < 120 else text[:117] + "...",
        )
    Console(width=180).print(table)


def register(app: typer.Typer) -> None:
    """Add the workflow commands at the top level."""
    for command in (start, signal, pause, resume, cancel, events):
        app.command(command.__name__)(command)
