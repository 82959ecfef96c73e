"""``kflow projections rebuild`` gives identical rows and loses nothing while live."""

from __future__ import annotations

from collections.abc import Callable

import psycopg
import pytest

from kflow.bus.topics import topic_names
from kflow.projections.rebuild import rebuild
from tests.readside.conftest import ReadSide, RunningProjector
from tests.readside.expected import actual_executions, event_keys, expected_executions, logged_keys
from tests.readside.workload import make_logs

pytestmark = pytest.mark.integration


def _dump(conn: psycopg.Connection[tuple[object, ...]]) -> dict[str, list[tuple[object, ...]]]:
    return {
        "executions": conn.execute("SELECT * FROM executions ORDER BY workflow_id").fetchall(),
        "steps": conn.execute("SELECT * FROM steps ORDER BY workflow_id, step_key").fetchall(),
        "events": conn.execute("SELECT * FROM events ORDER BY workflow_id, seq").fetchall(),
        "offsets": conn.execute(
            "SELECT topic, partition, next_offset FROM projection_offsets ORDER BY 1, 2"
        ).fetchall(),
    }


@pytest.mark.parametrize("processes", [1, 2])
def test_rebuild_gives_identical_rows_and_live_projection_continues(
    readside: ReadSide, start_projector: Callable[[str], RunningProjector], processes: int
) -> None:
    first = make_logs("r1", 80)
    n1 = readside.produce(first)
    live = start_projector("postgres")
    live.wait_applied(n1)
    with readside.connect() as conn:
        before = _dump(conn)
    report = rebuild(
        readside.dsn,
        readside.schema,
        readside.settings.kafka_bootstrap,
        topic_names(readside.settings.topic_prefix),
        processes=processes,
    )
    assert report.events == n1
    with readside.connect() as conn:
        assert _dump(conn) == before
        schemas = conn.execute(
            "SELECT count(*) FROM pg_namespace WHERE nspname = %s", (f"{readside.schema}_rebuild",)
        ).fetchone()
    assert schemas == (0,)
    second = make_logs("r2", 40)
    n2 = readside.produce(second)
    live.wait_applied(n1 + n2)
    with readside.connect() as conn:
        assert event_keys(conn) == logged_keys(first + second)
        assert actual_executions(conn) == expected_executions(first + second)
