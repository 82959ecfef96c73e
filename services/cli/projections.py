"""``kflow projections rebuild|status``: the PostgreSQL read model versus the log."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from kflow.bus.errors import BusError
from kflow.bus.topics import topic_names
from kflow.cli.readside_common import SchemaOption, fail, schema_or_default
from kflow.projections.db import connect
from kflow.projections.errors import ReadSideError
from kflow.projections.postgres import load_offsets
from kflow.projections.rebuild import rebuild
from kflow.settings import get_settings

projections_app = typer.Typer(help="Rebuild and inspect read models.", no_args_is_help=True)


@projections_app.command("rebuild")
def rebuild_cmd(
    schema: SchemaOption = None,
    processes: Annotated[
        int, typer.Option("--processes", min=1, max=64, help="projector processes for the bulk")
    ] = 2,
) -> None:
    """Replay the log from offset 0 into fresh tables and swap them in when caught up."""
    settings = get_settings()
    target = schema_or_default(schema)
    with Progress(
        TextColumn("rebuilding"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]:>9,.0f} events/s"),
        TimeElapsedColumn(),
    ) as bar:
        task = bar.add_task("rebuild", total=None, rate=0.0)

        def progress(done: int, total: int) -> None:
            elapsed = bar.tasks[task].elapsed or 0.0
            bar.update(
                task,
                completed=done,
                total=max(total, done),
                rate=done / elapsed if elapsed else 0.0,
            )

        try:
            report = rebuild(
                settings.database_url,
                target,
                settings.kafka_bootstrap,
                topic_names(settings.topic_prefix),
                progress,
                processes,
            )
        except (ReadSideError, BusError) as e:  # BusError: Kafka could not be read
            fail(str(e))
    typer.echo(
        f"rebuilt {target}: {report.events} events "
        f"({report.poison} undecodable or invalid skipped) "
        f"in {report.seconds:.1f}s, {report.rate:,.0f} events/s; swapped in"
    )


@projections_app.command("status")
def status_cmd(schema: SchemaOption = None) -> None:
    """Stored projection offsets per topic partition."""
    target = schema_or_default(schema)
    try:
        with connect(get_settings().database_url, target) as conn:
            offsets = load_offsets(conn, "postgres")
    except ReadSideError as e:
        fail(str(e))
    for (topic, partition), off in sorted(offsets.items()):
        typer.echo(f"{topic}[{partition}] next offset {off}")


def register(app: typer.Typer) -> None:
    """Add ``kflow projections``."""
    app.add_typer(projections_app, name="projections")
