"""``kflow dev up|down|status``: the local Kafka, PostgreSQL and Redis (``stack.sh``)."""

from __future__ import annotations

import typer
from rich.console import Console
from rich.table import Table

from kflow.settings import get_settings
from kflow.stack import ServerHealth, run_stack, stack_health

dev_app = typer.Typer(
    help="Run the local stack: Kafka, PostgreSQL and Redis.", no_args_is_help=True
)


def _print_table(health: list[ServerHealth]) -> None:
    table = Table(title="kflow local stack")
    for column in ("server", "address", "pid", "health", "log"):
        table.add_column(column)
    for h in health:
        table.add_row(
            h.name,
            h.address,
            str(h.pid) if h.pid else "-",
            f"[green]up[/green] {h.detail}" if h.healthy else f"[red]down[/red] {h.detail}",
            str(h.log) if h.log and h.log.exists() else "-",
        )
    Console(width=200).print(table)


@dev_app.command("up")
def up() -> None:
    """Install what is missing, start the three servers and wait until they answer."""
    settings = get_settings()
    code = run_stack("up", settings)
    if code != 0:
        typer.echo(f"stack.sh up failed (exit {code}); see the messages above", err=True)
        raise typer.Exit(code)
    health = stack_health(settings)
    _print_table(health)
    if not all(h.healthy for h in health):
        raise typer.Exit(1)


@dev_app.command("down")
def down() -> None:
    """Stop the servers that ``kflow dev up`` started (data is kept)."""
    raise typer.Exit(run_stack("down", get_settings()))


@dev_app.command("status")
def status() -> None:
    """Show each server's address, pid and health; exit 1 when one is down."""
    health = stack_health(get_settings())
    _print_table(health)
    if not all(h.healthy for h in health):
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    """Add the ``dev`` sub-commands to the ``kflow`` app."""
    app.add_typer(dev_app, name="dev")
