"""A row published twice starts its workflow once: the orchestrator ignores the repeat."""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest

from kflow.bus.topics import topic_names
from kflow.relay.outbox import enqueue_start
from kflow.relay.relay import Relay, RelayConfig
from kflow.settings import Settings
from tests.relay.conftest import read_commands
from tests.runtime.conftest import Runtime, types_of

pytestmark = pytest.mark.integration


@pytest.fixture
def orchestrator(isolated_settings: Settings, redis_prefix: str) -> Iterator[Runtime]:
    """One orchestrator thread on this test's topics (no processor: steps just wait)."""
    runtime = Runtime(isolated_settings, redis_prefix)
    runtime.start_orchestrator()
    yield runtime
    runtime.stop()


def test_republished_row_is_answered_by_duplicate_start_ignored(
    orchestrator: Runtime, relay_config: RelayConfig, kafka_bootstrap: str, topic_prefix: str
) -> None:
    orchestrator.apply(
        {"name": "ship", "nodes": [{"id": "pack", "type": "echo", "queue": "default"}]}
    )
    dsn = relay_config.dsn
    with psycopg.connect(dsn) as conn:
        workflow_id = enqueue_start(conn, name="ship", input={"order": 1}, actor="svc:orders")
        conn.commit()
    relay = Relay(relay_config)
    try:
        assert relay.drain() == 1
        orchestrator.wait_for(workflow_id, "WorkflowStarted")
        # The state a crash between the broker's ack and the DB commit leaves behind.
        with psycopg.connect(dsn) as conn:
            conn.execute("UPDATE kflow_outbox SET published_at = NULL")
            conn.commit()
        assert relay.drain() == 1
    finally:
        relay.close()
    events = orchestrator.wait_for(workflow_id, "DuplicateStartIgnored")
    assert types_of(events).count("WorkflowStarted") == 1
    first, again = read_commands(kafka_bootstrap, topic_names(topic_prefix).commands)
    assert first[1] == again[1]  # the same bytes: event id, idempotency key, time
