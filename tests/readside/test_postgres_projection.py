"""The PostgreSQL projection equals the fold of the log, exactly once."""

from __future__ import annotations

from collections.abc import Callable

import pytest

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
