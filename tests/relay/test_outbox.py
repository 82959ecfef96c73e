"""The outbox on the real PostgreSQL and Kafka: atomicity, encoding, bad rows, outages."""

from __future__ import annotations

import threading
from typing import Any

import psycopg
import pytest
from prometheus_client import REGISTRY

from kflow.bus.topics import topic_names
from kflow.core.inputs import StartWorkflow
from kflow.relay.errors import OutboxInputError
from kflow.relay.outbox import (
    enqueue_start,
    enqueue_start_async,
    failed_rows,
    install,
    is_installed,
    outbox_stats,
    retry_failed,
)
from kflow.relay.relay import Relay, RelayConfig
from tests.relay.conftest import pending, read_commands, scalar, wait_until

pytestmark = pytest.mark.integration

ORDERS = "CREATE TABLE IF NOT EXISTS orders (id text PRIMARY KEY, total int NOT NULL)"


def place_order(dsn: str, order_id: str, *, commit: bool, **start: Any) -> str:
    """A business transaction: insert an order, enqueue its workflow, commit or roll back."""
    with psycopg.connect(dsn) as conn:
        conn.execute(ORDERS)
        conn.commit()
        conn.execute("INSERT INTO orders VALUES (%s, %s)", (order_id, 42))
        workflow_id = enqueue_start(conn, **start)
        if commit:
            conn.commit()
        else:
            conn.rollback()
    return workflow_id


def test_install_is_idempotent(outbox_dsn: str) -> None:
    with psycopg.connect(outbox_dsn, autocommit=True) as conn:
        install(conn)
        install(conn)
        assert is_installed(conn)
        assert outbox_stats(conn).pending == 0


def test_rolled_back_start_is_never_published_committed_one_is_published_once(
    relay_config: RelayConfig, kafka_bootstrap: str, topic_prefix: str
) -> None:
    dsn = relay_config.dsn
    relay = Relay(relay_config)
    try:
        place_order(
            dsn, "o-1", commit=False, name="ship", input={"order": "o-1"}, workflow_id="wf-rb"
        )
        assert relay.drain() == 0
        assert scalar(dsn, "SELECT count(*) FROM orders") == 0

        workflow_id = place_order(
            dsn,
            "o-2",
            commit=True,
            name="ship",
            version=3,
            input={"order": "o-2", "lines": [1, 2.5, None]},
            tenant="acme",
            actor="svc:orders",
            correlation_id="req-7",
        )
        assert relay.drain() == 1
        assert relay.drain() == 0  # marked published: not sent again
    finally:
        relay.close()

    records = read_commands(kafka_bootstrap, topic_names(topic_prefix).commands)
    assert len(records) == 1
    key, _, envelope = records[0]
    assert key == workflow_id
    assert envelope.type == "StartWorkflow"
    assert envelope.body == StartWorkflow(
        workflow_id=workflow_id,
        name="ship",
        version=3,
        input={"order": "o-2", "lines": [1, 2.5, None]},
        tenant="acme",
        actor="svc:orders",
    )
    assert (envelope.tenant, envelope.actor, envelope.correlation_id) == (
        "acme",
        "svc:orders",
        "req-7",
    )
    assert envelope.idempotency_key == f"start:{workflow_id}"
    assert envelope.event_id == scalar(dsn, "SELECT event_id::text FROM kflow_outbox")
    assert pending(dsn) == 0


def test_enqueue_writes_in_the_callers_transaction_and_never_commits(outbox_dsn: str) -> None:
    with psycopg.connect(outbox_dsn) as conn:
        enqueue_start(conn, name="ship", workflow_id="wf-open")
        assert pending(outbox_dsn) == 0  # another session sees nothing yet
        conn.commit()
    assert pending(outbox_dsn) == 1


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"input": {"x": float("nan")}}, "input"),
        ({"input": {"x": object()}}, "input"),
        ({"input": "\x00"}, "input"),
        ({"input": "y" * 2000}, "input"),
        ({"workflow_id": "has space"}, "workflow_id"),
        ({"name": ""}, "name"),
        ({"version": -1}, "version"),
        ({"tenant": "t" * 300}, "tenant"),
    ],
)
def test_enqueue_rejects_bad_arguments_naming_the_field(
    outbox_dsn: str, kwargs: dict[str, Any], field: str
) -> None:
    args: dict[str, Any] = {"name": "ship", "max_payload_bytes": 1024, **kwargs}
    with psycopg.connect(outbox_dsn) as conn:
        with pytest.raises(OutboxInputError) as raised:
            enqueue_start(conn, **args)
        conn.commit()
    assert raised.value.field == field
    assert raised.value.fix
    assert pending(outbox_dsn) == 0


def test_enqueue_refuses_an_autocommit_connection_outside_a_transaction(outbox_dsn: str) -> None:
    with psycopg.connect(outbox_dsn, autocommit=True) as conn:
        with pytest.raises(OutboxInputError, match=r"conn: .*autocommit"):
            enqueue_start(conn, name="ship")
        with conn.transaction():  # an explicit transaction block is fine
            enqueue_start(conn, name="ship")
    assert pending(outbox_dsn) == 1


def test_unpublishable_rows_are_marked_failed_and_do_not_stall_the_rest(
    relay_config: RelayConfig, kafka_bootstrap: str, topic_prefix: str
) -> None:
    dsn = relay_config.dsn
    with psycopg.connect(dsn) as conn:
        enqueue_start(conn, name="ship", workflow_id="wf-good-1")
        # Rows written by plain SQL, bypassing the helper's checks.
        conn.execute(
            "INSERT INTO kflow_outbox (workflow_id, name, input) VALUES"
            " ('wf-huge-number', 'ship', '{\"x\": 1e5000}'),"
            " ('bad id', 'ship', '{}'),"
            " ('wf-too-big', 'ship', jsonb_build_object('blob', repeat('z', 5000)))"
        )
        enqueue_start(conn, name="ship", workflow_id="wf-good-2")
        conn.commit()

    relay = Relay(
        RelayConfig(
            dsn=dsn, bootstrap=kafka_bootstrap, topic_prefix=topic_prefix, max_payload_bytes=4096
        )
    )
    try:
        outcome = relay.relay_batch()
        assert (outcome.claimed, outcome.published, outcome.failed) == (5, 2, 3)
        with psycopg.connect(dsn, autocommit=True) as conn:
            reasons = {row.workflow_id: row.reason for row in failed_rows(conn)}
            assert outbox_stats(conn).failed == 3
        assert reasons["wf-huge-number"].startswith("input: not readable as JSON")
        assert reasons["bad id"].startswith("workflow_id: ")
        assert reasons["wf-too-big"].startswith("input: 5011 bytes of JSON, over the limit of 4096")
        assert relay.drain() == 0  # failed rows are not retried on their own

        # An operator fixes a row and queues it again.
        with psycopg.connect(dsn) as conn:
            conn.execute(
                "UPDATE kflow_outbox SET workflow_id = 'wf-fixed' WHERE workflow_id = 'bad id'"
            )
            row_id = scalar(dsn, "SELECT id FROM kflow_outbox WHERE workflow_id = 'bad id'")
            assert retry_failed(conn, [row_id]) == 1
            conn.commit()
        assert relay.drain() == 1
    finally:
        relay.close()
    keys = [k for k, _, _ in read_commands(kafka_bootstrap, topic_names(topic_prefix).commands)]
    assert sorted(keys) == ["wf-fixed", "wf-good-1", "wf-good-2"]


def test_broker_down_leaves_rows_pending_with_the_error_then_they_are_published(
    relay_config: RelayConfig, kafka_bootstrap: str, topic_prefix: str
) -> None:
    dsn = relay_config.dsn
    with psycopg.connect(dsn) as conn:
        ids = [enqueue_start(conn, name="ship", workflow_id=f"wf-{i}") for i in range(5)]
        conn.commit()
    # Nothing listens on port 1: every delivery times out.
    down = Relay(
        RelayConfig(
            dsn=dsn,
            bootstrap="127.0.0.1:1",
            topic_prefix=topic_prefix,
            delivery_timeout_s=1.0,
            producer_overrides={"socket.connection.setup.timeout.ms": 1000},
        )
    )
    try:
        outcome = down.relay_batch()
    finally:
        down.close()
    assert (outcome.published, outcome.failed, outcome.deferred) == (0, 0, 5)
    assert outcome.error
    assert pending(dsn) == 5
    assert scalar(dsn, "SELECT min(attempts) FROM kflow_outbox") == 1
    assert scalar(dsn, "SELECT count(*) FROM kflow_outbox WHERE last_error IS NOT NULL") == 5

    up = Relay(relay_config)
    try:
        assert up.drain() == 5
    finally:
        up.close()
    keys = [k for k, _, _ in read_commands(kafka_bootstrap, topic_names(topic_prefix).commands)]
    assert sorted(keys) == sorted(ids)
    assert scalar(dsn, "SELECT count(*) FROM kflow_outbox WHERE last_error IS NOT NULL") == 0


def test_notify_wakes_the_relay_long_before_its_poll_interval(
    relay_config: RelayConfig, kafka_bootstrap: str, topic_prefix: str
) -> None:
    dsn = relay_config.dsn
    # With a 10-minute poll interval only the insert trigger's NOTIFY can wake the relay.
    relay = Relay(
        RelayConfig(
            dsn=dsn, bootstrap=kafka_bootstrap, topic_prefix=topic_prefix, poll_interval_s=600
        )
    )
    thread = threading.Thread(target=relay.run, name="relay")
    thread.start()
    try:
        # The first pass found nothing and the relay is now waiting.
        wait_until(relay.idle.is_set, "relay waiting for rows")
        with psycopg.connect(dsn) as conn:
            enqueue_start(conn, name="ship", workflow_id="wf-notified")
            conn.commit()
        wait_until(lambda: pending(dsn) == 0, "publishing after NOTIFY", timeout_s=60)
    finally:
        relay.stop()
        thread.join(30)
    assert not thread.is_alive()
    records = read_commands(kafka_bootstrap, topic_names(topic_prefix).commands)
    assert [k for k, _, _ in records] == ["wf-notified"]


def test_published_rows_are_deleted_after_the_retention(
    relay_config: RelayConfig, kafka_bootstrap: str, topic_prefix: str
) -> None:
    dsn = relay_config.dsn
    with psycopg.connect(dsn) as conn:
        for i in range(3):
            enqueue_start(conn, name="ship", workflow_id=f"wf-{i}")
        conn.execute("INSERT INTO kflow_outbox (workflow_id, name) VALUES ('bad id', 'ship')")
        conn.commit()
    keep = Relay(relay_config)  # default retention: one day
    gone = Relay(
        RelayConfig(dsn=dsn, bootstrap=kafka_bootstrap, topic_prefix=topic_prefix, retention_s=0)
    )
    try:
        assert keep.drain() == 3
        assert keep.delete_published() == 0
        with psycopg.connect(dsn) as conn:
            enqueue_start(conn, name="ship", workflow_id="wf-late")
            conn.commit()
        assert gone.delete_published() == 3
    finally:
        keep.close()
        gone.close()
    remaining = scalar(
        dsn, "SELECT string_agg(workflow_id, ',' ORDER BY workflow_id) FROM kflow_outbox"
    )
    assert remaining == "bad id,wf-late"  # failed and unpublished rows are kept


async def test_async_helper_writes_in_the_callers_transaction(outbox_dsn: str) -> None:
    async with await psycopg.AsyncConnection.connect(outbox_dsn) as conn:
        workflow_id = await enqueue_start_async(conn, name="ship", input=[1, 2])
        assert pending(outbox_dsn) == 0
        await conn.commit()
    assert scalar(outbox_dsn, "SELECT workflow_id FROM kflow_outbox") == workflow_id
    assert scalar(outbox_dsn, "SELECT input::text FROM kflow_outbox") == "[1, 2]"


def test_gauges_report_the_backlog_and_its_age(relay_config: RelayConfig) -> None:
    dsn = relay_config.dsn
    with psycopg.connect(dsn) as conn:
        enqueue_start(conn, name="ship", workflow_id="wf-a")
        enqueue_start(conn, name="ship", workflow_id="wf-b")
        conn.execute(
            "INSERT INTO kflow_outbox (workflow_id, name, created_at)"
            " VALUES ('bad id', 'ship', now() - interval '1 hour')"
        )
        conn.execute("UPDATE kflow_outbox SET created_at = now() - interval '90 seconds'")
        conn.commit()
    relay = Relay(relay_config)
    try:
        relay.refresh_gauges()
        assert sample("kflow_outbox_pending_rows") == 3
        assert sample("kflow_outbox_lag_seconds") >= 90
        relay.drain()
        relay.refresh_gauges()
    finally:
        relay.close()
    assert sample("kflow_outbox_pending_rows") == 0
    assert sample("kflow_outbox_failed_rows") == 1
    assert sample("kflow_outbox_lag_seconds") == 0


def sample(name: str) -> float:
    value = REGISTRY.get_sample_value(name)
    assert value is not None, f"metric {name} is not registered"
    return value


def test_relay_reconnects_after_its_database_sessions_are_killed(
    relay_config: RelayConfig, kafka_bootstrap: str, topic_prefix: str
) -> None:
    dsn = relay_config.dsn
    relay = Relay(relay_config)
    thread = threading.Thread(target=relay.run, name="relay")
    thread.start()
    try:
        wait_until(relay.idle.is_set, "relay waiting for rows")
        killed = scalar(
            dsn,
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
            " WHERE datname = current_database() AND application_name LIKE 'kflow-relay%'",
        )
        assert killed == 2  # the batch and the LISTEN sessions
        with psycopg.connect(dsn) as conn:
            enqueue_start(conn, name="ship", workflow_id="wf-after-kill")
            conn.commit()
        wait_until(lambda: pending(dsn) == 0, "publishing after reconnecting")
        assert thread.is_alive()
    finally:
        relay.stop()
        thread.join(30)
    records = read_commands(kafka_bootstrap, topic_names(topic_prefix).commands)
    assert [k for k, _, _ in records] == ["wf-after-kill"]
