"""Binary COPY of the COPY-ready rows of ``kflow.projections.fold``, and reading them back.

Binary COPY skips PostgreSQL's text parsing of every number and timestamp, and
the dumpers below take the rows as they are: epoch milliseconds for
``timestamptz`` and JSON text (bytes) for ``json``/``jsonb``. They are looked up
by column type only (``register_dumper(None, ...)``, used after ``set_types``),
and only on the cursor doing the COPY, so no other query changes.
:func:`documents_as_text` makes a cursor read ``json`` columns back as unparsed
``Json`` documents, the text exactly as written.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Sequence

import psycopg
from psycopg.adapt import Buffer, Dumper, Loader
from psycopg.postgres import types as pg_types
from psycopg.pq import Format

from kflow.core.jsondoc import Json
from kflow.projections.fold import Row

_PG_EPOCH_MS = 946_684_800_000
"""2000-01-01T00:00:00Z in epoch milliseconds: where PostgreSQL's timestamps count from."""
_INT64 = struct.Struct("!q").pack


class EpochMsDumper(Dumper):
    """``timestamptz`` from epoch milliseconds (exact: binary is microseconds since 2000)."""

    format = Format.BINARY
    oid = pg_types["timestamptz"].oid

    def dump(self, obj: int) -> bytes:
        return _INT64((obj - _PG_EPOCH_MS) * 1000)


class JsonbTextDumper(Dumper):
    """``jsonb`` from JSON text bytes (binary jsonb is a version byte, then the text)."""

    format = Format.BINARY
    oid = pg_types["jsonb"].oid

    def dump(self, obj: bytes) -> bytes:
        return b"\x01" + obj


class JsonTextDumper(Dumper):
    """``json`` from JSON text bytes (binary json is the text itself)."""

    format = Format.BINARY
    oid = pg_types["json"].oid

    def dump(self, obj: bytes) -> bytes:
        return obj


class JsonDocumentLoader(Loader):
    """``json`` column (text format) -> ``Json`` holding the stored text, not parsed."""

    def load(self, data: Buffer) -> Json:
        return Json.from_text(bytes(data).decode())


def documents_as_text(cur: psycopg.Cursor[tuple[object, ...]]) -> None:
    """Make ``cur`` return ``json`` columns as :class:`Json` documents of their text."""
    cur.adapters.register_loader("json", JsonDocumentLoader)


def copy_rows(
    cur: psycopg.Cursor[tuple[object, ...]],
    table: str,
    cols: str,
    types: Sequence[str],
    rows: Iterable[Row],
) -> None:
    """``COPY table (cols) FROM STDIN`` in binary; ``types`` are the columns' types in order."""
    for dumper in (EpochMsDumper, JsonbTextDumper, JsonTextDumper):
        cur.adapters.register_dumper(None, dumper)
    with cur.copy(f"COPY {table} ({cols}) FROM STDIN (FORMAT BINARY)".encode()) as copy:
        copy.set_types(types)
        write = copy.write_row
        for row in rows:
            write(row)
