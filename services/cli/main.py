"""The ``kflow`` command line: one Typer app with a sub-app per area."""

from __future__ import annotations

from typing import Annotated

import typer

import kflow

app = typer.Typer(
    name="kflow",
    help="kflow: event-sourced DAG workflows on Apache Kafka.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"kflow {kflow.__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_print_version, is_eager=True, help="print the version and exit"
        ),
    ] = False,
) -> None:
    del version  # handled by its eager callback


def _register() -> None:
    # Each area module exposes `register(app)`; keep one line per area.
    from kflow.cli import dev, topics

    dev.register(app)
    topics.register(app)
    from kflow.cli import definitions, run, workflows

    definitions.register(app)
    run.register(app)
    workflows.register(app)
    from kflow.cli import api, apikey, audit, db, lag, projections, status

    db.register(app)
    projections.register(app)
    audit.register(app)
    apikey.register(app)
    lag.register(app)
    status.register(app)
    api.register_run(run.run_app)
    from kflow.cli import outbox

    outbox.register(app)
    from kflow.cli import demo

    demo.register(app)
    from kflow.cli import recovery

    recovery.register(app)


def main() -> None:
    """Console-script entry point; a bad ``KFLOW_*`` value is an error message, exit code 2."""
    from kflow.settings import SettingsError

    _register()
    try:
        app()
    except SettingsError as e:
        typer.echo(f"error: {e}", err=True)
        raise SystemExit(2) from None
