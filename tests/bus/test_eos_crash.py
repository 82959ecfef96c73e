"""SIGKILL the copy loop at random points; the output still holds every input exactly once."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

import pytest

from kflow.bus.topics import TopicNames
from tests.bus.kafka_helpers import GroupProgress, end_offsets, produce, read_all

pytestmark = [pytest.mark.integration, pytest.mark.slow]

RECORDS = 10_000
KEYS = 97
KILLS = 5
REPO = Path(__file__).resolve().parents[2]


def _start_child(
    bootstrap: str,
    topics: TopicNames,
    group: str,
    instance: str = "copier-0",
    batch: int = 50,
    delay_ms: float = 0.0,
    txn_timeout_ms: int | None = None,
) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    if txn_timeout_ms is not None:
        env["COPY_CHILD_TXN_TIMEOUT_MS"] = str(txn_timeout_ms)
    child = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.bus.copy_child",
            bootstrap,
            topics.commands,
            topics.events,
            group,
            instance,  # same instance id on every restart: fences the killed one
            str(batch),
            str(delay_ms),
        ],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert child.stdout is not None
    assert child.stdout.readline().strip() == "ready", "copy child did not start"
    return child


def _stop(child: subprocess.Popen[str], sig: signal.Signals) -> None:
    child.send_signal(sig)
    child.wait(30)
    assert child.stdout is not None
    child.stdout.close()


def _inputs() -> tuple[list[tuple[str, bytes]], dict[str, int]]:
    """RECORDS records over KEYS keys; each value is ``key:n`` with n counting per key."""
    counters: dict[str, int] = defaultdict(int)
    records: list[tuple[str, bytes]] = []
    for i in range(RECORDS):
        key = f"k{i % KEYS}"
        records.append((key, f"{key}:{counters[key]}".encode()))
        counters[key] += 1
    return records, counters


def _assert_exactly_once_in_order(bootstrap: str, topic: str, counters: dict[str, int]) -> None:
    seen: dict[str, list[int]] = defaultdict(list)
    for record in read_all(bootstrap, topic):
        key, number = record.value.decode().split(":")
        assert key == record.key
        seen[key].append(int(number))
    missing = {k: sorted(set(range(n)) - set(seen[k])) for k, n in counters.items()}
    duplicates = {k: len(v) - len(set(v)) for k, v in seen.items()}
    lost = {k: (len(m), m[:3]) for k, m in missing.items() if m}
    doubled = {k: d for k, d in duplicates.items() if d}
    assert not lost and not doubled, f"lost (count, first): {lost}; duplicated: {doubled}"
    for key, count in counters.items():
        assert seen[key] == list(range(count)), f"{key}: out of order"


def _wait_until_all_committed(progress: GroupProgress, ends: dict[int, int]) -> None:
    deadline = time.monotonic() + 120  # guard against a hang, not a speed assertion
    while progress.offsets() != ends:
        assert time.monotonic() < deadline, f"stalled: {progress.offsets()} of {ends}"
        time.sleep(0.2)


def _wait_for_progress(progress: GroupProgress, target: int) -> None:
    deadline = time.monotonic() + 60  # guard against a hang, not a speed assertion
    while progress.total() < target:
        assert time.monotonic() < deadline, f"no progress to {target} records"
        time.sleep(0.01)


@pytest.mark.topics(partitions=4, queues=())
def test_copy_loop_survives_sigkill_exactly_once(kafka_bootstrap: str, topics: TopicNames) -> None:
    records, counters = _inputs()
    produce(kafka_bootstrap, topics.commands, records)
    group = f"{topics.prefix}.copy"
    rng = random.Random(4)
    # Kill after the committed progress passes each target, plus a random few ms so the
    # kill lands anywhere in the next transaction (collecting, producing, committing).
    targets = sorted(rng.sample(range(300, 8000), KILLS))

    progress = GroupProgress(kafka_bootstrap, group, topics.commands)
    try:
        for target in targets:
            # 0.5 ms per record inside the transaction: most kills hit an open one.
            child = _start_child(kafka_bootstrap, topics, group, batch=40, delay_ms=0.5)
            _wait_for_progress(progress, target)
            time.sleep(rng.uniform(0, 0.05))
            _stop(child, signal.SIGKILL)

        before_final = progress.total()
        assert before_final < RECORDS, "every record was copied before the last kill"
        child = _start_child(kafka_bootstrap, topics, group)
        try:
            _wait_until_all_committed(progress, end_offsets(kafka_bootstrap, topics.commands))
        finally:
            _stop(child, signal.SIGTERM)
    finally:
        progress.close()
    assert child.returncode == 0, "the copy loop did not stop cleanly on SIGTERM"

    _assert_exactly_once_in_order(kafka_bootstrap, topics.events, counters)
    uncommitted = len(read_all(kafka_bootstrap, topics.events, committed_only=False))
    print(
        f"\n{KILLS} kills after {targets}; committed before the last restart: "
        f"{before_final}/{RECORDS}; records in the log incl. aborted: {uncommitted}"
    )


@pytest.mark.topics(partitions=4, queues=())
def test_survivor_takes_over_a_dead_instances_partitions_exactly_once(
    kafka_bootstrap: str, topics: TopicNames
) -> None:
    """Two instances share the group; one is SIGKILLed for good mid-stream.

    Its partitions move to the survivor after session.timeout.ms, and its open transaction
    is aborted by the broker after transaction.timeout.ms (nobody restarts its id); both are
    set near the broker's minimums here (6 s, 10 s) so the test waits less for them.
    """
    records, counters = _inputs()
    produce(kafka_bootstrap, topics.commands, records)
    group = f"{topics.prefix}.copy"
    # Small batches keep the copy slow enough to kill the doomed one half-way.
    fast = {"batch": 10, "txn_timeout_ms": 10_000}
    survivor = _start_child(kafka_bootstrap, topics, group, "copier-0", **fast)
    doomed = _start_child(kafka_bootstrap, topics, group, "copier-1", **fast)
    progress = GroupProgress(kafka_bootstrap, group, topics.commands)
    try:
        assert doomed.stdout is not None
        owned: list[int] = []
        while not owned:  # wait until the doomed instance owns partitions
            line = doomed.stdout.readline()
            assert line, "the doomed copy child exited early"
            owned = [int(p) for p in line.split()[1:]] if line.startswith("assigned") else []
        ends = end_offsets(kafka_bootstrap, topics.commands)
        deadline = time.monotonic() + 60  # guard against a hang
        while not any(progress.offsets()[p] > 0 for p in owned):
            assert time.monotonic() < deadline, "the doomed instance made no progress"
            time.sleep(0.01)
        _stop(doomed, signal.SIGKILL)
        at_kill = progress.offsets()
        assert any(at_kill[p] < ends[p] for p in owned), "killed after finishing its work"
        _wait_until_all_committed(progress, ends)
    finally:
        _stop(survivor, signal.SIGTERM)
        progress.close()
    assert survivor.returncode == 0
    _assert_exactly_once_in_order(kafka_bootstrap, topics.events, counters)
