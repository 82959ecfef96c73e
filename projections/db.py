"""PostgreSQL connections bound to one read-model schema."""

from __future__ import annotations

import re

import psycopg
from psycopg import sql

from kflow.projections.errors import ReadSideConfigError, ReadSideUnavailable
from kflow.settings import SCHEMA_PATTERN

_SCHEMA_RE = re.compile(SCHEMA_PATTERN)


def check_schema(schema: str) -> str:
    """Return ``schema`` if it is a safe lower-case identifier, else raise."""
    if not _SCHEMA_RE.match(schema):
        raise ReadSideConfigError(
            f"schema {schema!r} is not allowed: use lower-case letters, digits and '_' "
            "(set KFLOW_DB_SCHEMA)"
        )
    return schema


def search_path_option(schema: str) -> str:
    """libpq ``options`` that make ``schema`` the only search path."""
    return f"-c search_path={check_schema(schema)}"


def connect(
    dsn: str, schema: str, *, autocommit: bool = False
) -> psycopg.Connection[tuple[object, ...]]:
    """Open a connection whose unqualified table names resolve in ``schema``."""
    try:
        return psycopg.connect(dsn, options=search_path_option(schema), autocommit=autocommit)
    except psycopg.OperationalError as e:
        raise ReadSideUnavailable(f"PostgreSQL is unreachable at {_redact(dsn)}: {e}") from e


def ensure_schema(conn: psycopg.Connection[tuple[object, ...]], schema: str) -> None:
    """Create ``schema`` if it does not exist (caller commits)."""
    conn.execute(
        sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(check_schema(schema)))
    )


def _redact(dsn: str) -> str:
    return re.sub(r"://([^:/@]+):[^@]*@", r"://\1:***@", dsn)
