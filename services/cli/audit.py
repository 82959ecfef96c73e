"""``kflow audit replay ID``: a workflow's state at any point, re-folded from the log."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from kflow.bus.reader import ReaderError
from kflow.bus.topics import topic_names
from kflow.cli.workflows import belongs_to, own_tenant
from kflow.core.jsondoc import plain
from kflow.core.views import step_view, summary
from kflow.projections.audit import AuditResult, audit, read_workflow_events
from kflow.projections.fold import ms_to_datetime
from kflow.settings import get_settings

audit_app = typer.Typer(help="Audit workflows from the event log.", no_args_is_help=True)


def _parse_time(text: str) -> int:
    try:
        at = datetime.fromisoformat(text)
    except ValueError as e:
        raise typer.BadParameter(
            "give an ISO-8601 time with a zone, e.g. 2026-01-31T12:00:00Z", param_hint="--at-time"
        ) from e
    if at.tzinfo is None:
        raise typer.BadParameter("add a time zone, e.g. ...Z or +02:00", param_hint="--at-time")
    return int(at.timestamp() * 1000)


@audit_app.command("replay")
def replay_cmd(
    workflow_id: Annotated[str, typer.Argument(help="the workflow to audit")],
    at_seq: Annotated[
        int | None, typer.Option("--at-seq", min=0, help="show the state after this seq")
    ] = None,
    at_time: Annotated[
        str | None, typer.Option("--at-time", help="show the state at this ISO-8601 time")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the state as JSON")] = False,
    timeout: Annotated[
        float,
        typer.Option(
            "--timeout", min=0, help="seconds to read the workflow's partition to its end"
        ),
    ] = 60.0,
) -> None:
    """Read the workflow's events from the log, re-fold them with the core and verify them.

    With an API key configured, only a workflow of its tenant is shown (like ``kflow
    events``: a courtesy; reading the events topic reads every tenant, docs/security.md).

    Exits 1 when the log diverges from what the core re-derives (the first bad seq is shown).
    """
    settings = get_settings()
    at_ms = _parse_time(at_time) if at_time is not None else None
    try:
        events = read_workflow_events(
            settings.kafka_bootstrap, topic_names(settings.topic_prefix), workflow_id, timeout
        )
    except ReaderError as e:
        typer.echo(f"error: cannot audit {workflow_id!r} from the whole log: {e}", err=True)
        typer.echo("hint: raise --timeout for a long log, or check Kafka", err=True)
        raise typer.Exit(1) from e
    tenant = own_tenant()  # with a key configured: only its tenant's workflows, as `events`
    if tenant is not None and events and not belongs_to([le.event for le in events], tenant):
        events = []
    if not events:
        of = f" of tenant {tenant!r}" if tenant is not None else ""
        typer.echo(
            f"error: no events for workflow {workflow_id!r}{of} in {settings.topic_prefix}.events",
            err=True,
        )
        raise typer.Exit(1)
    result = audit(events, at_seq, at_ms)
    if as_json:
        typer.echo(json.dumps(plain(result.state.to_dict()) if result.state else None, indent=2))
    else:
        _print(result, at_seq, at_ms)
    if result.divergence is not None or result.fold_error is not None:
        raise typer.Exit(1)


def _print(result: AuditResult, at_seq: int | None, at_ms: int | None) -> None:
    console = Console()
    table = Table("seq", "type", "at", "step", "actor", title="events")
    for le in result.events:
        mark = (
            ""
            if (at_seq is None or le.seq <= at_seq) and (at_ms is None or le.event.at <= at_ms)
            else "dim"
        )
        table.add_row(
            str(le.seq), le.type, f"{ms_to_datetime(le.event.at):%Y-%m-%d %H:%M:%S.%f}"[:-3],
            getattr(le.event, "step_key", "") or "", le.actor or "", style=mark,
        )  # fmt: skip
    console.print(table)
    point = f"seq {at_seq}" if at_seq is not None else (f"time {at_ms}" if at_ms else "the end")
    if result.state is None:
        console.print(f"state at {point}: (no workflow yet)")
    else:
        s = summary(result.state)
        console.print(f"state at {point}: [bold]{s.status}[/] seq {s.seq} {s.name}@{s.version}")
        steps = Table("step", "status", "attempt", "output", title="steps")
        for rec in sorted(result.state.steps.values(), key=lambda r: r.step_key):
            v = step_view(result.state, rec)
            steps.add_row(v.step_key, v.status, str(v.attempt), v.output.text[:60])
        console.print(steps)
    if result.fold_error:
        console.print(f"[red]the log cannot be folded: {result.fold_error}[/]")
    if result.divergence is not None:
        console.print(f"[red]log diverges at seq {result.divergence.seq}[/]\n{result.divergence}")
    elif not result.fold_error:
        console.print("[green]verified: re-deciding the recorded inputs reproduces every event[/]")


def register(app: typer.Typer) -> None:
    """Add ``kflow audit``."""
    app.add_typer(audit_app, name="audit")
