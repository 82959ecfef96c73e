"""Options and helpers shared by the read-side CLI modules."""

from __future__ import annotations

from typing import Annotated, NoReturn

import typer

from kflow.projections.db import check_schema
from kflow.projections.errors import ReadSideConfigError
from kflow.settings import get_settings

SchemaOption = Annotated[
    str | None, typer.Option("--schema", help="read-model schema [default: KFLOW_DB_SCHEMA]")
]


def schema_or_default(schema: str | None) -> str:
    """The ``--schema`` value, or the configured one; a bad name is a usage error."""
    try:
        return check_schema(schema if schema is not None else get_settings().db_schema)
    except ReadSideConfigError as e:
        raise typer.BadParameter(str(e), param_hint="--schema") from e


def fail(message: str) -> NoReturn:
    """Print ``error: message`` to stderr and exit 1."""
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(1)
