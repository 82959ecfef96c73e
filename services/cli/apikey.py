"""``kflow apikey create|rotate|revoke|list``: API keys, the one credential of every entry point.

A key authenticates HTTP requests (only its hash is stored in PostgreSQL) and signs the
commands of the CLI, ``kflow.Client`` and the outbox relay; its signing key is published to
``<prefix>.principals`` for the orchestrators, and a revocation reaches them there within
seconds (ADR 0060, docs/security.md).
"""

from __future__ import annotations

from typing import Annotated

import psycopg
import typer
from rich.console import Console
from rich.table import Table

from kflow.api.apikeys import NewKey, Scope, create_key, revoke_key
from kflow.bus.credentials import key_file, save_key_file
from kflow.bus.principals import PrincipalsError, publish_key, publish_revocation
from kflow.cli.readside_common import SchemaOption, fail, schema_or_default
from kflow.projections.db import connect
from kflow.projections.errors import ReadSideError
from kflow.settings import get_settings

apikey_app = typer.Typer(
    help="Create, rotate and revoke API keys (the identity of every entry point).",
    no_args_is_help=True,
)


@apikey_app.command("create")
def create(
    name: Annotated[str, typer.Option("--name", help="who or what uses the key")],
    tenant: Annotated[str, typer.Option("--tenant", help="the only tenant the key can act in")],
    scope: Annotated[
        list[Scope], typer.Option("--scope", help="read, write or admin (repeatable)")
    ],
    schema: SchemaOption = None,
    save: Annotated[
        bool,
        typer.Option(
            "--save",
            help="write the key to KFLOW_API_KEY_FILE [~/.config/kflow/api-key] (mode 0600) "
            "instead of printing it: the CLI and kflow.Client sign with it; an existing file "
            "is never overwritten",
        ),
    ] = False,
    unless_saved: Annotated[
        bool,
        typer.Option(
            "--unless-saved",
            help="with --save: when that file exists, create nothing and exit 0 (init jobs)",
        ),
    ] = False,
) -> None:
    """Create a key and print it once: only its hash is stored, its signing key published.

    Example: kflow apikey create --name $USER --tenant default --scope write --save
    """
    settings = get_settings()
    path = key_file(settings)
    if unless_saved and not save:
        raise typer.BadParameter("goes with --save", param_hint="--unless-saved")
    if save and path.exists():
        if unless_saved:
            typer.echo(f"{path} holds a key already: kept as it is, no key created")
            return
        fail(
            f"{path} exists: it is never overwritten, so no key was created; move it away "
            "first, or leave out --save to print the new key"
        )
    target = schema_or_default(schema)
    try:
        with connect(settings.database_url, target) as conn:
            key = create_key(conn, name, tenant, scope)
    except ValueError as e:
        raise typer.BadParameter(str(e)) from e
    except (ReadSideError, psycopg.Error) as e:
        fail(f"{e} (did you run kflow db migrate?)")
    _publish_or_fail(key)
    if save and save_key_file(key.token, path):
        _print_key(key, saved_to=str(path))
    else:  # not asked, or the file appeared meanwhile: printed, never lost
        _print_key(key)


def _publish_or_fail(key: NewKey) -> None:
    settings = get_settings()
    try:
        publish_key(settings.kafka_bootstrap, settings.topic_prefix, key.signing_record())
    except PrincipalsError as e:
        fail(
            f"key {key.key_id} was stored but its signing key was not published: {e}; "
            f"revoke it (kflow apikey revoke {key.key_id}) and create another"
        )


def _print_key(key: NewKey, saved_to: str | None = None) -> None:
    typer.echo(f"key id:  {key.key_id}")
    typer.echo(f"tenant:  {key.tenant}")
    typer.echo(f"scopes:  {','.join(key.scopes)}")
    if saved_to is not None:
        typer.echo(f"api key: saved to {saved_to} (mode 0600)")
        return
    typer.echo(f"api key: {key.token}")
    typer.echo(
        "store the api key now: it cannot be shown again (CLI and kflow.Client read it "
        "from KFLOW_API_KEY or ~/.config/kflow/api-key; --save writes that file)",
        err=True,
    )


def _revoke_everywhere(key_id: str) -> None:
    settings = get_settings()
    try:
        publish_revocation(settings.kafka_bootstrap, settings.topic_prefix, key_id)
    except PrincipalsError as e:
        fail(
            f"key {key_id} is revoked for HTTP, but orchestrators were not told: {e}; "
            f"run kflow apikey revoke {key_id} again once Kafka is up"
        )


@apikey_app.command("rotate")
def rotate(
    key_id: Annotated[str, typer.Argument(help="the key id to replace")],
    schema: SchemaOption = None,
) -> None:
    """Replace a key: a new key with the same name, tenant and scopes; the old one is revoked."""
    target = schema_or_default(schema)
    try:
        with connect(get_settings().database_url, target) as conn:
            row = conn.execute(
                "SELECT name, tenant, scopes FROM api_keys WHERE key_id = %s"
                " AND revoked_at IS NULL",
                (key_id,),
            ).fetchone()
            if row is None:
                fail(f"no active key with id {key_id!r} (see kflow apikey list)")
            name, tenant, scopes = row
            assert isinstance(scopes, list)
            key = create_key(conn, str(name), str(tenant), [Scope(s) for s in scopes])
            _publish_or_fail(key)
            revoke_key(conn, key_id)
    except (ReadSideError, psycopg.Error) as e:
        fail(str(e))
    _revoke_everywhere(key_id)
    _print_key(key)
    typer.echo(f"revoked {key_id}", err=True)


@apikey_app.command("revoke")
def revoke(
    key_id: Annotated[str, typer.Argument(help="the key id printed by create")],
    schema: SchemaOption = None,
) -> None:
    """Revoke a key at once, for HTTP and for signed commands."""
    target = schema_or_default(schema)
    try:
        with connect(get_settings().database_url, target) as conn:
            done = revoke_key(conn, key_id)
            known = (
                done
                or conn.execute("SELECT 1 FROM api_keys WHERE key_id = %s", (key_id,)).fetchone()
                is not None
            )
    except (ReadSideError, psycopg.Error) as e:
        fail(str(e))
    if not known:
        fail(f"no key with id {key_id!r} (see kflow apikey list)")
    _revoke_everywhere(key_id)  # again for a key revoked before: a lost revocation is resent
    typer.echo(f"revoked {key_id}" if done else f"{key_id} was revoked already; resent")


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
