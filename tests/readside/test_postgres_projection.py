"""The PostgreSQL projection equals the fold of the log, exactly once."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from kflow.core.events import event_to_dict
from kflow.core.replay import replay
from kflow.core.views import step_view, summary
from kflow.projections.fold import datetime_to_ms
from tests.readside.conftest import ReadSide, RunningProjector
from tests.readside.expected import (
    actual_executions,
    actual_steps,
    event_keys,
    expected_executions,
    expected_steps,
    logged_keys,
)
from tests.readside.workload import make_logs

pytestmark = pytest.mark.integration


def test_projection_equals_fold_of_log(
    readside: ReadSide, start_projector: Callable[[str], RunningProjector]
) -> None:
    logs = make_logs("eq", 60)
    total = readside.produce(logs)
    start_projector("postgres").wait_applied(total)
    with readside.connect() as conn:
        assert actual_executions(conn) == expected_executions(logs)
        assert actual_steps(conn) == expected_steps(logs)
        assert event_keys(conn) == logged_keys(logs)
        offsets = conn.execute(
            "SELECT sum(next_offset) FROM projection_offsets WHERE topic LIKE '%%.events'"
        ).fetchone()
    assert offsets is not None and offsets[0] == total


def test_restart_resumes_from_stored_offsets_without_duplicates(
    readside: ReadSide, start_projector: Callable[[str], RunningProjector]
) -> None:
    first, second = make_logs("a", 20), make_logs("b", 20)
    n1 = readside.produce(first)
    p = start_projector("postgres")
    p.wait_applied(n1)
    p.close()
    n2 = readside.produce(second)
    start_projector("postgres").wait_applied(n2)
    with readside.connect() as conn:
        assert event_keys(conn) == logged_keys(first + second)
        assert actual_executions(conn) == expected_executions(first + second)


def test_times_json_and_event_bodies_are_stored_exactly(
    readside: ReadSide, start_projector: Callable[[str], RunningProjector]
) -> None:
    logs = make_logs("ex", 15, t0=1_800_000_000_123)
    total = readside.produce(logs)
    start_projector("postgres").wait_applied(total)
    with readside.connect() as conn:
        events = {
            (r[0], r[1]): (r[2], datetime_to_ms(r[3]))  # type: ignore[arg-type]
            for r in conn.execute("SELECT workflow_id, seq, body, at FROM events").fetchall()
        }
        executions = {
            r[0]: (datetime_to_ms(r[1]), datetime_to_ms(r[2]), datetime_to_ms(r[3]), r[4])  # type: ignore[arg-type]
            for r in conn.execute(
                "SELECT workflow_id, created_at, updated_at, finished_at, input FROM executions"
            ).fetchall()
        }
        steps = {
            (r[0], r[1]): (datetime_to_ms(r[2]), datetime_to_ms(r[3]), r[4], r[5])  # type: ignore[arg-type]
            for r in conn.execute(
                "SELECT workflow_id, step_key, scheduled_at, finished_at, input, output FROM steps"
            ).fetchall()
        }
    for w in logs:
        for e in w.events:
            assert events[(w.workflow_id, e.seq)] == (event_to_dict(e), e.at)
        state = replay(w.events)
        s = summary(state)
        last_at = w.events[-1].at
        assert executions[w.workflow_id] == (s.started_at, last_at, s.finished_at, state.input)
        for key, rec in state.steps.items():
            v = step_view(state, rec)
            assert steps[(w.workflow_id, key)] == (v.scheduled_at, v.finished_at, v.input, v.output)
