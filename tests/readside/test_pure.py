"""Pure read-side pieces: key handling, row mapping, cursors, migration files (no servers)."""

from __future__ import annotations

import struct
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import pytest

from kflow.api.apikeys import Principal, Scope, hash_token, matches, parse_key_id
from kflow.api.problems import Problem
from kflow.api.queries import decode_cursor, encode_cursor
from kflow.bus.envelope import workflow_id_for
from kflow.core.events import StepEvent, event_to_dict
from kflow.core.views import StepView, apply_step_event, apply_workflow_event
from kflow.projections import fold
from kflow.projections.db import check_schema
from kflow.projections.errors import MigrationError, ReadSideConfigError
from kflow.projections.log_event import LogEvent
from kflow.projections.migrate import load_migrations
from kflow.projections.pgcopy import EpochMsDumper
from tests.readside.workload import run_workflow


def test_key_ids_parse_only_from_well_formed_keys() -> None:
    token = "kf_0123456789ab_" + "A" * 43
    assert parse_key_id(token) == "0123456789ab"
    for bad in ("", "kf_0123456789ab_short", "Bearer " + token, token + "x", "kf_XYZ_" + "A" * 43):
        assert parse_key_id(bad) is None
    assert matches(token, hash_token(token))
    assert not matches(token[:-1] + "B", hash_token(token))


def test_scopes_include_the_lower_ones() -> None:
    admin = Principal("id", "n", "t", frozenset({Scope.ADMIN}))
    read = Principal("id", "n", "t", frozenset({Scope.READ}))
    assert admin.allows(Scope.READ) and admin.allows(Scope.WRITE)
    assert read.allows(Scope.READ) and not read.allows(Scope.WRITE)
    assert read.actor == "apikey:id:n"


def test_idempotency_keys_map_to_stable_per_tenant_ids() -> None:
    assert workflow_id_for("acme", "k1") == workflow_id_for("acme", "k1")
    assert workflow_id_for("acme", "k1") != workflow_id_for("globex", "k1")
    # the mapping must never change, or a retry after an upgrade starts a second workflow
    assert workflow_id_for("acme", "k1") == "945c2e4c-996f-50f6-93e1-36adda4dfcd9"


def test_rows_round_trip_to_the_cores_views() -> None:
    wlog = run_workflow("rt-1", 1_800_000_000_000, outcome="failed")
    summary = None
    steps: dict[str, StepView] = {}
    for e in wlog.events:
        summary = apply_workflow_event(summary, e)
        if isinstance(e, StepEvent):
            steps[e.step_key] = apply_step_event(steps.get(e.step_key), e)
    assert summary is not None
    row = fold.execution_row(summary, fold.json_bytes({"n": 1}), wlog.events[-1].at)
    assert len(row) == len(fold.EXECUTION_COL_TYPES)
    # PostgreSQL hands jsonb back parsed and timestamps as datetimes; emulate it
    ms = fold.ms_to_datetime
    stored = (*row[:5], None, summary.output, *row[7:9], *map(ms, row[9:12]), row[12])
    assert fold.summary_from_row(stored) == summary
    for view in steps.values():
        r = fold.step_row(view)
        assert len(r) == len(fold.STEP_COL_TYPES)
        back = (*r[:8], view.input, view.output, *r[10:13], *map(ms, r[13:16]), r[16])
        assert fold.step_from_row(back) == view


def test_event_rows_carry_the_cores_event_dict_and_exact_milliseconds() -> None:
    wlog = run_workflow("ms-1", 1_800_000_000_123, outcome="failed")
    for n, event in enumerate(wlog.events):
        le = LogEvent("t.events", 0, n, event, "id", "default", "me", 0)
        row = fold.event_row(le)
        assert len(row) == len(fold.EVENT_COL_TYPES)
        body = orjson.loads(row[7])
        assert body == event_to_dict(event) and list(body) == list(event_to_dict(event))
        assert row[:3] == (event.workflow_id, event.seq, type(event).__name__)
        assert row[3] == event.at and row[8:] == (0, n)
    assert wlog.events[0].at == 1_800_000_000_123


def test_binary_timestamps_are_exact_milliseconds() -> None:
    # binary timestamptz: microseconds since 2000-01-01 UTC, big-endian int64
    dumper = EpochMsDumper(int)
    for ms in (0, 946_684_800_000, 1_800_000_000_123, -1):
        (micros,) = struct.unpack("!q", dumper.dump(ms))
        at = datetime(2000, 1, 1, tzinfo=UTC) + timedelta(microseconds=micros)
        assert fold.datetime_to_ms(at) == ms


def test_cursors_round_trip_and_reject_forgeries() -> None:
    at = fold.ms_to_datetime(1_800_000_000_000)
    assert at is not None
    assert decode_cursor(encode_cursor(at, "wf-1")) == (at, "wf-1")
    for forged in ("", "!!!", "bm90IGEgY3Vyc29y", "'; DROP TABLE executions; --"):
        with pytest.raises(Problem) as exc:
            decode_cursor(forged)
        assert exc.value.status == 400


def test_schema_names_are_checked() -> None:
    assert check_schema("kflow_1") == "kflow_1"
    for bad in ("Kflow", "1abc", "a-b", "x;drop", "a" * 60):
        with pytest.raises(ReadSideConfigError):
            check_schema(bad)


def test_migration_files_are_numbered_and_misnamed_ones_refused(tmp_path: Path) -> None:
    versions = [m.version for m in load_migrations()]
    assert versions == sorted(set(versions)) and versions[0] == 1
    (tmp_path / "0001_ok.sql").write_text("SELECT 1;")
    (tmp_path / "two.sql").write_text("SELECT 2;")
    with pytest.raises(MigrationError, match=r"NNNN_name\.sql"):
        load_migrations(tmp_path)
