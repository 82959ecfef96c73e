"""``kflow db migrate|status``: the read-model schema's versioned migrations."""

from __future__ import annotations

import typer

from kflow.cli.readside_common import SchemaOption, fail, schema_or_default
from kflow.projections.db import connect
from kflow.projections.errors import ReadSideError
from kflow.projections.migrate import applied_versions, load_migrations, migrate
from kflow.settings import get_settings

db_app = typer.Typer(help="Manage the read-model database schema.", no_args_is_help=True)


@db_app.command("migrate")
def migrate_cmd(schema: SchemaOption = None) -> None:
    """Apply the migrations the schema does not have yet (safe to run again)."""
    target = schema_or_default(schema)
    try:
        with connect(get_settings().database_url, target) as conn:
            applied = migrate(conn, target)
            conn.commit()
    except ReadSideError as e:
        fail(str(e))
    for m in applied:
        typer.echo(f"applied  {m.version:04d}_{m.name}")
    typer.echo(f"schema {target} is up to date ({len(applied)} applied)")


@db_app.command("status")
def status_cmd(schema: SchemaOption = None) -> None:
    """List each migration and whether the schema has it."""
    target = schema_or_default(schema)
    try:
        with connect(get_settings().database_url, target) as conn:
            done = set(applied_versions(conn, target))
    except ReadSideError as e:
        fail(str(e))
    pending = 0
    for m in load_migrations():
        state = "applied" if m.version in done else "pending"
        pending += state == "pending"
        typer.echo(f"{state:8} {m.version:04d}_{m.name}")
    if pending:
        typer.echo(f"{pending} pending: run kflow db migrate --schema {target}")


def register(app: typer.Typer) -> None:
    """Add ``kflow db``."""
    app.add_typer(db_app, name="db")
