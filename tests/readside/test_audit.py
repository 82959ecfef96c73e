"""``kflow audit replay``: state at any seq from the log, and the first bad seq of a bad log."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from kflow.bus.reader import ReaderError
from kflow.bus.topics import topic_names
from kflow.core.events import WorkflowCompleted
from kflow.projections.audit import read_workflow_events
from tests.kafka_helpers import produce
from tests.readside.conftest import ReadSide
from tests.readside.workload import WorkflowLog, encode, run_workflow

pytestmark = pytest.mark.integration
KFLOW = str(Path(sys.executable).with_name("kflow"))


def _kflow(readside: ReadSide, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "KFLOW_KAFKA_BOOTSTRAP": readside.settings.kafka_bootstrap,
        "KFLOW_TOPIC_PREFIX": readside.settings.topic_prefix,
        "COLUMNS": "200",
    }
    return subprocess.run([KFLOW, *args], env=env, capture_output=True, text=True, timeout=120)


def _produce(readside: ReadSide, wlog: WorkflowLog) -> None:
    topic = f"{readside.settings.topic_prefix}.events"
    records = [(wlog.workflow_id, encode(wlog, e)) for e in wlog.events]
    produce(readside.settings.kafka_bootstrap, topic, records)


def test_audit_shows_state_at_seq_and_verifies(readside: ReadSide) -> None:
    good = run_workflow("audit-ok", 1_800_000_000_000)
    _produce(readside, good)
    done = _kflow(readside, "audit", "replay", "audit-ok")
    assert done.returncode == 0, done.stderr
    assert "completed" in done.stdout and "verified" in done.stdout
    early = _kflow(readside, "audit", "replay", "audit-ok", "--at-seq", "3", "--json")
    assert early.returncode == 0, early.stderr
    state = json.loads(early.stdout)
    assert state["seq"] == 3 and state["status"] == "running"
    by_time = _kflow(
        readside, "audit", "replay", "audit-ok", "--at-time", "2027-01-15T08:00:00.007Z", "--json"
    )
    # at t0 + 7 ms the first result (seq 3) and the next step's scheduling (seq 4) happened
    assert json.loads(by_time.stdout)["seq"] == 4


def test_audit_reports_first_diverging_seq(readside: ReadSide) -> None:
    wlog = run_workflow("audit-bad", 1_800_000_000_000)
    last = wlog.events[-1]
    assert isinstance(last, WorkflowCompleted)
    tampered = dataclasses.replace(last, output={"forged": True})
    _produce(readside, dataclasses.replace(wlog, events=[*wlog.events[:-1], tampered]))
    out = _kflow(readside, "audit", "replay", "audit-bad")
    assert out.returncode == 1
    assert f"diverges at seq {last.seq}" in out.stdout
    missing = _kflow(readside, "audit", "replay", "no-such-workflow")
    assert missing.returncode == 1 and "no events" in missing.stderr


def test_an_audit_that_cannot_read_the_whole_log_fails_instead_of_verifying_a_part(
    readside: ReadSide,
) -> None:
    wlog = run_workflow("audit-long", 1_800_000_000_000)
    _produce(readside, wlog)
    topics = topic_names(readside.settings.topic_prefix)
    bootstrap = readside.settings.kafka_bootstrap
    assert len(read_workflow_events(bootstrap, topics, "audit-long")) == len(wlog.events)
    # no time left to reach the end: an error, never the part read so far
    with pytest.raises(ReaderError, match=r"\.events partition\(s\) \[\d\] not read to the end"):
        read_workflow_events(bootstrap, topics, "audit-long", timeout_s=0)
    out = _kflow(readside, "audit", "replay", "audit-long", "--timeout", "0")
    assert out.returncode == 1
    assert "verified" not in out.stdout
    assert "cannot audit 'audit-long' from the whole log" in out.stderr
    assert "raise --timeout" in out.stderr
