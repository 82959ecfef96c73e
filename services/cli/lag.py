"""``kflow lag``: consumer lag of every kflow consumer group, per topic and partition."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from kflow.observability.lag import LagUnavailable, consumer_lag
from kflow.settings import get_settings


def lag(
    group_prefix: Annotated[
        str | None,
        typer.Option("--group-prefix", help="groups to show [default: the topic prefix]"),
    ] = None,
) -> None:
    """Committed offset versus end offset for each kflow group, topic and partition."""
    settings = get_settings()
    prefix = group_prefix if group_prefix is not None else settings.topic_prefix
    try:
        rows = consumer_lag(settings.kafka_bootstrap, prefix)
    except LagUnavailable as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(1) from e
    if not rows:
        typer.echo(f"no consumer group starts with {prefix!r}")
        return
    table = Table()
    for name in ("group", "topic"):
        table.add_column(name, overflow="fold")
    for name in ("partition", "committed", "end", "lag"):
        table.add_column(name, justify="right")
    for r in rows:
        table.add_row(
            r.group, r.topic, str(r.partition),
            "-" if r.committed is None else str(r.committed), str(r.end), str(r.lag),
        )  # fmt: skip
    table.add_section()
    table.add_row("total", "", "", "", "", str(sum(r.lag for r in rows)))
    Console().print(table)


def register(app: typer.Typer) -> None:
    """Add ``kflow lag``."""
    app.command("lag")(lag)
