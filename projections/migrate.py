"""Versioned SQL migrations (``migrations/NNNN_name.sql``) applied once per schema."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

import psycopg
from psycopg import sql

from kflow.projections.db import check_schema, ensure_schema
from kflow.projections.errors import MigrationError

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
_NAME_RE = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")
# any constant shared by every migrating process: serialises concurrent `kflow db migrate`
_LOCK_KEY = 0x6B666C6F77


@dataclass(frozen=True)
class Migration:
    """One SQL file: its version, name, text and checksum."""

    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


def load_migrations(directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    """The migration files in version order; a misnamed file is an error."""
    found: list[Migration] = []
    for path in sorted(directory.glob("*.sql")):
        m = _NAME_RE.match(path.name)
        if not m:
            raise MigrationError(f"{path.name}: migration files must be named NNNN_name.sql")
        found.append(Migration(int(m.group(1)), m.group(2), path.read_text()))
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions):
        raise MigrationError(f"two migrations share a version in {directory}")
    return found


def migrate(
    conn: psycopg.Connection[tuple[object, ...]],
    schema: str,
    migrations: list[Migration] | None = None,
) -> list[Migration]:
    """Apply the missing migrations to ``schema``, each in its own transaction.

    Idempotent: running it again applies nothing. Returns what it applied.
    """
    check_schema(schema)
    todo = load_migrations() if migrations is None else migrations
    applied: list[Migration] = []
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_KEY,))
        ensure_schema(conn, schema)
        conn.execute(sql.SQL("SET LOCAL search_path = {}").format(sql.Identifier(schema)))
        conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " version integer PRIMARY KEY, name text NOT NULL, checksum text NOT NULL,"
            " applied_at timestamptz NOT NULL DEFAULT now())"
        )
        rows = conn.execute("SELECT version, checksum FROM schema_migrations").fetchall()
        done = {int(str(v)): str(c) for v, c in rows}
        for mig in todo:
            if mig.version in done:
                if done[mig.version] != mig.checksum:
                    raise MigrationError(
                        f"migration {mig.version:04d}_{mig.name} was changed after it was applied "
                        f"to schema {schema!r}; add a new migration instead of editing it"
                    )
                continue
            with conn.transaction():
                conn.execute(mig.sql.encode())
                conn.execute(
                    "INSERT INTO schema_migrations (version, name, checksum) VALUES (%s, %s, %s)",
                    (mig.version, mig.name, mig.checksum),
                )
            applied.append(mig)
    return applied


def applied_versions(conn: psycopg.Connection[tuple[object, ...]], schema: str) -> list[int]:
    """Versions recorded in ``schema`` (empty if it was never migrated)."""
    row = conn.execute(
        "SELECT to_regclass(%s)", (f"{check_schema(schema)}.schema_migrations",)
    ).fetchone()
    if row is None or row[0] is None:
        return []
    q = sql.SQL("SELECT version FROM {}.schema_migrations ORDER BY version").format(
        sql.Identifier(schema)
    )
    return [int(r[0]) for r in conn.execute(q).fetchall()]  # type: ignore[call-overload]
