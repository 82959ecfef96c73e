"""Several relays on one outbox, and a relay killed mid-run: no row lost, none left behind."""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import threading
from collections import defaultdict
from pathlib import Path

import psycopg
import pytest

from kflow.bus.topics import topic_names
from kflow.cli.run import service_command
from kflow.relay.outbox import enqueue_start
from kflow.relay.relay import Relay, RelayConfig
from tests.relay.conftest import WAIT_S, pending, read_commands, scalar, wait_until

pytestmark = pytest.mark.integration


def enqueue_many(dsn: str, count: int, per_transaction: int = 250) -> list[str]:
    """``count`` committed outbox rows with workflow ids ``wf-00000``...; returns the ids."""
    ids = [f"wf-{i:05d}" for i in range(count)]
    with psycopg.connect(dsn) as conn:
        for start in range(0, count, per_transaction):
            for workflow_id in ids[start : start + per_transaction]:
                enqueue_start(conn, name="ship", input={"n": workflow_id}, workflow_id=workflow_id)
            conn.commit()
    return ids


def test_two_relays_publish_every_row_exactly_once_between_them(
    relay_config: RelayConfig, kafka_bootstrap: str, topic_prefix: str
) -> None:
    dsn = relay_config.dsn
    relays = [Relay(dataclasses.replace(relay_config, batch_size=25)) for _ in range(2)]
    threads = [threading.Thread(target=r.run, name=f"relay-{i}") for i, r in enumerate(relays)]
    for thread in threads:
        thread.start()
    try:
        # Both relays wait on an empty outbox, so one commit's NOTIFY wakes them together.
        wait_until(lambda: all(r.idle.is_set() for r in relays), "both relays waiting")
        ids = enqueue_many(dsn, 1000, per_transaction=1000)
        wait_until(lambda: pending(dsn) == 0, "publishing 1,000 rows")
    finally:
        for relay in relays:
            relay.stop()
        for thread in threads:
            thread.join(30)
    # SKIP LOCKED: a row is claimed by one relay only, so the two totals add up exactly.
    assert sum(r.published_total for r in relays) == 1000
    assert all(r.published_total > 0 for r in relays)  # both woke on the same NOTIFY
    records = read_commands(kafka_bootstrap, topic_names(topic_prefix).commands, min_records=1000)
    keys = [key for key, _, _ in records]
    assert len(keys) == 1000
    assert sorted(keys) == ids
    assert all(envelope.body.workflow_id == key for key, _, envelope in records)
    assert scalar(dsn, "SELECT count(*) FROM kflow_outbox WHERE published_at IS NULL") == 0


@pytest.mark.slow
def test_relay_killed_mid_run_loses_no_row_and_repeats_only_identical_records(
    relay_config: RelayConfig, kafka_bootstrap: str, topic_prefix: str, tmp_path: Path
) -> None:
    dsn = relay_config.dsn
    batch = 10
    ids = enqueue_many(dsn, 3000)
    env = {
        **os.environ,
        "KFLOW_TOPIC_PREFIX": topic_prefix,
        "KFLOW_KAFKA_BOOTSTRAP": kafka_bootstrap,
    }
    command = service_command(
        "run", "relay", "--dsn", dsn, "--batch-size", str(batch), "--poll-interval", "0.2"
    )
    log_path = tmp_path / "relay.log"

    def start() -> subprocess.Popen[bytes]:
        with log_path.open("ab") as log:
            return subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)

    def published() -> int:
        return int(scalar(dsn, "SELECT count(*) FROM kflow_outbox WHERE published_at IS NOT NULL"))

    first = start()
    try:
        wait_until(lambda: published() >= 50 or first.poll() is not None, "first publishes")
        assert first.poll() is None, log_path.read_text()
        first.send_signal(signal.SIGKILL)
        first.wait(WAIT_S)
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
    left = pending(dsn)
    assert left > 0, "the relay finished before it was killed; the test proves nothing"

    second = start()
    try:
        wait_until(lambda: pending(dsn) == 0, "the restarted relay publishing the rest")
        second.send_signal(signal.SIGTERM)
        assert second.wait(WAIT_S) == 0, log_path.read_text()
    finally:
        if second.poll() is None:
            second.kill()
            second.wait()

    records = read_commands(kafka_bootstrap, topic_names(topic_prefix).commands, min_records=3000)
    by_key: dict[str, set[bytes]] = defaultdict(set)
    copies: dict[str, int] = defaultdict(int)
    for key, value, envelope in records:
        assert envelope.body.workflow_id == key
        by_key[key].add(value)
        copies[key] += 1
    assert sorted(by_key) == ids  # every row published
    # A repeat is the same record (same event id and idempotency key), byte for byte ...
    assert all(len(values) == 1 for values in by_key.values())
    # ... and only the batch in flight at the kill can have been published but not marked.
    assert sum(n - 1 for n in copies.values()) <= batch


def test_the_relay_refuses_to_start_without_the_commands_topic(relay_config: RelayConfig) -> None:
    """A wrong KFLOW_TOPIC_PREFIX is one line naming the topic and the fix, not a relay that
    retries deliveries to a topic that does not exist."""
    prefix = "no-such-prefix-relay"
    env = {**os.environ, "KFLOW_TOPIC_PREFIX": prefix}
    done = subprocess.run(
        service_command("run", "relay", "--dsn", relay_config.dsn),
        env=env,
        capture_output=True,
        text=True,
        timeout=WAIT_S,
        check=False,
    )
    assert done.returncode == 1, done.stderr
    assert f"{prefix}.commands does not exist" in done.stderr
    assert "kflow topics create" in done.stderr
    assert "Traceback" not in done.stderr
