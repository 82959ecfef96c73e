"""``kflow apikey create|revoke|list``: API keys for the read-model API."""

from __future__ import annotations

from typing import Annotated

import psycopg
import typer
from rich.console import Console
from rich.table import Table

from kflow.api.apikeys import Scope, create_key, revoke_key
from kflow.cli.readside_common import SchemaOption, fail, schema_or_default
from kflow.projections.db import connect
from kflow.projections.errors import ReadSideError
from kflow.settings import get_settings

apikey_app = typer.Typer(help="Create and revoke API keys.", no_args_is_help=True)


@apikey_app.command("create")
def create(
    name: Annotated[str, typer.Option("--name", help="who or what uses the key")],
    tenant: Annotated[str, typer.Option("--tenant", help="the only tenant the key can see")],
    scope: Annotated[
        list[Scope], typer.Option("--scope", help="read, write or admin (repeatable)")
    ],
    schema: SchemaOption = None,
) -> None:
    """Create a key and print it once: only its hash is stored."""
    target = schema_or_default(schema)
    try:
        with connect(get_settings().database_url, target) as conn:
            key = create_key(conn, name, tenant, scope)
    except ValueError as e:
        raise typer.BadParameter(str(e)) from e
    except (ReadSideError, psycopg.Error) as e:
        fail(f"{e} (did you run kflow db migrate?)")
    typer.echo(f"key id:  {key.key_id}")
    typer.echo(f"tenant:  {key.tenant}")
    typer.echo(f"scopes:  {','.join(key.scopes)}")
    typer.echo(f"api key: {key.token}")
    typer.echo("store the api key now: it cannot be shown again", err=True)


@apikey_app.command("revoke")
def revoke(
    key_id: Annotated[str, typer.Argument(help="the key id printed by create")],
    schema: SchemaOption = None,
) -> None:
    """Revoke a key at once."""
    target = schema_or_default(schema)
    try:
        with connect(get_settings().database_url, target) as conn:
            done = revoke_key(conn, key_id)
    except (ReadSideError, psycopg.Error) as e:
        fail(str(e))
    if not done:
        fail(f"no active key with id {key_id!r} (see kflow apikey list)")
    typer.echo(f"revoked {key_id}")


@apikey_app.command("list")
def list_keys(schema: SchemaOption = None) -> None:
    """List keys (ids, names, tenants, scopes; never the keys)."""
    target = schema_or_default(schema)
    try:
        with connect(get_settings().database_url, target) as conn:
            rows = conn.execute(
                "SELECT key_id, name, tenant, scopes, created_at, revoked_at FROM api_keys"
                " ORDER BY created_at"
            ).fetchall()
    except (ReadSideError, psycopg.Error) as e:
        fail(str(e))
    table = Table("key id", "name", "tenant", "scopes", "created", "revoked")
    for key_id, name, tenant, scopes, created, revoked in rows:
        assert isinstance(scopes, list)
        table.add_row(
            str(key_id), str(name), str(tenant), ",".join(scopes), f"{created:%Y-%m-%d %H:%M}",
            f"{revoked:%Y-%m-%d %H:%M}" if revoked else "",
        )  # fmt: skip
    Console().print(table)


def register(app: typer.Typer) -> None:
    """Add ``kflow apikey``."""
    app.add_typer(apikey_app, name="apikey")
