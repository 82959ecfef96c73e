"""A projector SIGKILLed mid-batch and restarted lands every event exactly once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.readside.conftest import ReadSide, wait_until
from tests.readside.expected import (
    actual_executions,
    actual_steps,
    event_keys,
    expected_executions,
    expected_steps,
    logged_keys,
)
from tests.readside.workload import make_logs

pytestmark = [pytest.mark.integration, pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[2]


def _spawn(readside: ReadSide, target: str) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "KFLOW_KAFKA_BOOTSTRAP": readside.settings.kafka_bootstrap,
        "KFLOW_TOPIC_PREFIX": readside.settings.topic_prefix,
        "KFLOW_DATABASE_URL": readside.dsn,
        "KFLOW_REDIS_URL": readside.settings.redis_url,
        "KFLOW_DB_SCHEMA": readside.schema,
        "KFLOW_REDIS_PREFIX": readside.settings.redis_prefix,
        "KFLOW_PROJECTOR_BATCH": "20",
        "KFLOW_PROJECTOR_INSTANCE": f"crash-{target}",
    }
    return subprocess.Popen(
        [sys.executable, "-m", "kflow.projections", target],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def _applied(readside: ReadSide) -> int:
    with readside.connect() as conn:
        row = conn.execute(
            "SELECT coalesce(sum(next_offset), 0) FROM projection_offsets"
            " WHERE topic LIKE '%%.events'"
        ).fetchone()
    return int(str(row[0])) if row else 0


def test_sigkill_mid_batch_then_restart_lands_each_event_once(readside: ReadSide) -> None:
    logs = make_logs("crash", 500)
    total = readside.produce(logs)
    kills = 0
    seen = 0
    for _ in range(3):
        proc = _spawn(readside, "postgres")
        try:
            floor = seen

            def progressed(floor: int = floor) -> bool:
                return _applied(readside) > floor + 100

            wait_until(progressed, "projector progress")
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
        seen = _applied(readside)
        if seen < total:
            kills += 1
    assert kills >= 1, "every kill came after the projector had finished; use more events"
    proc = _spawn(readside, "postgres")
    try:
        wait_until(lambda: _applied(readside) == total, "projector to catch up")
    finally:
        proc.terminate()
        proc.wait(30)
    with readside.connect() as conn:
        assert event_keys(conn) == logged_keys(logs)  # none missing, none twice
        assert actual_executions(conn) == expected_executions(logs)
        assert actual_steps(conn) == expected_steps(logs)
