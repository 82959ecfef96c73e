"""Outbox fixtures: a fresh PostgreSQL schema with the outbox installed, per test."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest
from psycopg import sql

from kflow.bus.contracts import Envelope, decode
from kflow.bus.credentials import command_signer
from kflow.relay.outbox import install
from kflow.relay.relay import RelayConfig
from kflow.settings import Settings
from tests.kafka_helpers import consume_all

WAIT_S = 60.0  # a safety net against hangs, not a speed assertion


@pytest.fixture
def outbox_dsn(pg_dsn: str) -> Iterator[str]:
    """DSN whose ``search_path`` is a new schema holding an installed outbox (dropped after)."""
    schema = f"outbox_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
    dsn = psycopg.conninfo.make_conninfo(pg_dsn, options=f"-c search_path={schema}")
    with psycopg.connect(dsn, autocommit=True) as conn:
        install(conn)
    yield dsn
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema)))


@pytest.fixture
def relay_config(outbox_dsn: str, isolated_settings: Settings) -> RelayConfig:
    """A relay configuration on this test's outbox and topics, signing with the session's key."""
    return RelayConfig(
        dsn=outbox_dsn,
        bootstrap=isolated_settings.kafka_bootstrap,
        topic_prefix=isolated_settings.topic_prefix,
        poll_interval_s=0.2,
        signer=command_signer(isolated_settings, "the test relay's StartWorkflow"),
    )


def scalar(dsn: str, query: str, params: tuple[Any, ...] | None = None) -> Any:
    """The first column of the first row of ``query``."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute(query.encode(), params).fetchone()
    assert row is not None
    return row[0]


def pending(dsn: str) -> int:
    """Rows neither published nor failed."""
    return int(
        scalar(
            dsn,
            "SELECT count(*) FROM kflow_outbox WHERE published_at IS NULL AND failed_at IS NULL",
        )
    )


def wait_until(check: Callable[[], bool], what: str, timeout_s: float = WAIT_S) -> None:
    """Poll ``check`` until it is true; fail naming ``what`` after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not happen within {timeout_s}s")
        time.sleep(0.05)


def read_commands(
    bootstrap: str, topic: str, min_records: int = 0
) -> list[tuple[str, bytes, Envelope]]:
    """Every record of the commands topic as (key, value bytes, decoded envelope)."""
    out = []
    for msg in consume_all(bootstrap, topic, min_records=min_records, timeout_s=WAIT_S):
        key, value = msg.key(), msg.value()
        assert isinstance(key, bytes) and isinstance(value, bytes)
        out.append((key.decode(), value, decode(value)))
    return out
