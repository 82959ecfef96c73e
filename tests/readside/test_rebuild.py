"""``kflow projections rebuild`` gives identical rows and loses nothing while live."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import psycopg
import pytest

from kflow.bus.topics import topic_names
from kflow.processor.registry import load_node_modules
from kflow.projections.rebuild import rebuild
from tests.readside.conftest import ReadSide, RunningProjector, wait_until
from tests.readside.expected import actual_executions, event_keys, expected_executions, logged_keys
from tests.readside.workload import make_logs
from tests.runtime.conftest import Runtime

pytestmark = pytest.mark.integration
KFLOW = str(Path(sys.executable).with_name("kflow"))
REBUILD_LIMIT_S = 120  # a guard against a hang, far above the few seconds a rebuild takes


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


@pytest.mark.parametrize("processes", ["1", "2"])
def test_rebuild_ends_on_a_log_written_by_the_real_orchestrator(
    readside: ReadSide, start_projector: Callable[[str], RunningProjector], processes: str
) -> None:
    """Every transaction ends in a commit marker: the offset after the last event is never
    the partition's end offset, and the rebuild must still see that it is done."""
    load_node_modules([])
    runtime = Runtime(readside.settings, readside.settings.redis_prefix)
    try:
        runtime.start_orchestrator()
        runtime.start_processor("default")
        runtime.apply(
            {
                "name": "pair",
                "nodes": [
                    {"id": "a", "type": "echo", "queue": "default"},
                    {"id": "b", "type": "echo", "queue": "default", "depends_on": ["a"]},
                ],
            }
        )
        ids = [runtime.start("pair", {"i": i}) for i in range(8)]
        runtime.wait_final(ids)
    finally:
        runtime.stop()
    live = start_projector("postgres")

    def all_completed() -> bool:
        with readside.connect() as conn:
            row = conn.execute(
                "SELECT count(*) FROM executions WHERE status = 'completed'"
            ).fetchone()
        return row == (len(ids),)

    wait_until(all_completed, "the live projection of the orchestrator's log")
    live.close()
    with readside.connect() as conn:
        before = _dump(conn)
    env = {
        **os.environ,
        "KFLOW_DATABASE_URL": readside.dsn,
        "KFLOW_DB_SCHEMA": readside.schema,
        "KFLOW_KAFKA_BOOTSTRAP": readside.settings.kafka_bootstrap,
        "KFLOW_TOPIC_PREFIX": readside.settings.topic_prefix,
    }
    command = [KFLOW, "projections", "rebuild", "--processes", processes]
    with subprocess.Popen(
        command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True
    ) as rebuild_cmd:
        try:
            out, err = rebuild_cmd.communicate(timeout=REBUILD_LIMIT_S)
        except subprocess.TimeoutExpired:
            os.killpg(rebuild_cmd.pid, signal.SIGKILL)  # the command and its worker processes
            rebuild_cmd.communicate()
            pytest.fail(f"`kflow projections rebuild --processes {processes}` did not end")
    assert rebuild_cmd.returncode == 0, err.decode()
    assert b"swapped in" in out
    with readside.connect() as conn:
        assert _dump(conn) == before
