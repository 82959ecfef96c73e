"""``kflow status``: the task queues, what waits on them, and whether a processor serves each."""

from __future__ import annotations

import typer
from rich.console import Console
from rich.table import Table

from kflow.cli.broker import require_broker
from kflow.observability.lag import LagUnavailable
from kflow.observability.queues import publish_queue_metrics, queue_status


def status() -> None:
    """Task queues with their waiting tasks and processors; exit 1 if tasks wait on a queue
    that no processor serves (each such queue is named, with the command that serves it).

    Example: kflow status
    """
    settings = require_broker()
    try:
        statuses = queue_status(settings.kafka_bootstrap, settings.topic_prefix)
    except LagUnavailable as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(1) from e
    publish_queue_metrics(statuses)
    if not statuses:
        typer.echo(f"no task queues under {settings.topic_prefix!r}; run `kflow topics create`")
        return
    table = Table(title=f"task queues of {settings.topic_prefix}")
    table.add_column("queue")
    table.add_column("processors", justify="right")
    table.add_column("waiting", justify="right")
    table.add_column("status")
    for s in statuses:
        state = "NO PROCESSOR" if s.unserved else ("idle" if not s.waiting else "working")
        table.add_row(s.queue, str(s.processors), str(s.waiting), state)
    Console(width=120).print(table)
    problems = [p for s in statuses if (p := s.problem()) is not None]
    for problem in problems:
        typer.echo(f"warning: {problem}", err=True)
    if problems:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    """Add ``kflow status``."""
    app.command("status")(status)
