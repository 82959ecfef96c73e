"""``kflow outbox install|status|retry`` against the real PostgreSQL."""

from __future__ import annotations

import psycopg
import pytest
from psycopg import sql
from typer.testing import CliRunner

from kflow.cli.main import _register, app
from tests.relay.conftest import scalar

pytestmark = pytest.mark.integration

runner = CliRunner()
_register()


def kflow(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, list(args))
    return result.exit_code, result.output


def test_status_without_table_tells_how_to_install(pg_dsn: str) -> None:
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier("empty_cli")))
    dsn = psycopg.conninfo.make_conninfo(pg_dsn, options="-c search_path=empty_cli")
    code, output = kflow("outbox", "status", "--dsn", dsn)
    assert code == 1
    assert "no outbox table" in output and "kflow outbox install" in output


def test_install_status_and_retry(outbox_dsn: str) -> None:
    code, output = kflow("outbox", "install", "--dsn", outbox_dsn)
    assert code == 0, output  # a second install changes nothing
    with psycopg.connect(outbox_dsn) as conn:
        conn.execute(
            "INSERT INTO kflow_outbox (workflow_id, name, failed_at, last_error) VALUES"
            " ('wf-1', 'ship', NULL, NULL), ('wf-2', 'ship', now(), 'input: too big')"
        )
        conn.commit()
    code, output = kflow("outbox", "status", "--dsn", outbox_dsn)
    assert code == 0, output
    assert "pending 1  failed 1  published 0" in output
    assert "workflow=wf-2 name=ship: input: too big" in output

    code, output = kflow("outbox", "retry", "--dsn", outbox_dsn)
    assert code == 2 and "--all" in output
    code, output = kflow("outbox", "retry", "--all", "--dsn", outbox_dsn)
    assert code == 0 and "1 row(s) queued again" in output
    assert scalar(outbox_dsn, "SELECT count(*) FROM kflow_outbox WHERE failed_at IS NULL") == 2


def test_unreachable_database_is_a_clear_error() -> None:
    code, output = kflow("outbox", "install", "--dsn", "postgresql://kflow:x@127.0.0.1:1/none")
    assert code == 1
    assert "cannot connect to PostgreSQL at 127.0.0.1:1/none" in output
    assert ":x@" not in output
