"""Orchestrator and processor metrics move on the real Kafka and Redis, once per commit."""

from __future__ import annotations

import time
import urllib.request
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from prometheus_client import REGISTRY

from kflow.bus.topics import topic_names
from kflow.observability.lag import LagRefresher
from kflow.observability.metrics import serve_metrics
from tests.kafka_helpers import consume_all, produce
from tests.runtime.conftest import TEST_QUEUES, WAIT_S, Runtime, types_of

pytestmark = [pytest.mark.integration, pytest.mark.topics(partitions=2, queues=TEST_QUEUES)]

FAST_RETRY = {"max_attempts": 3, "initial_delay_ms": 10, "multiplier": 2.0, "jitter": 0.0}


def task(node_id: str, type_: str = "echo", **extra: Any) -> dict[str, Any]:
    return {"id": node_id, "type": type_, "queue": "default", **extra}


def value(metric: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(metric, labels) or 0.0


def eventually(check: Callable[[], bool], what: str) -> None:
    """Metrics are published just after the commit the test observed: poll (hang guard only)."""
    deadline = time.monotonic() + WAIT_S
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(0.05)


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_workflows_move_the_runtime_metrics_once_each(runtime: Runtime) -> None:
    names = topic_names(runtime.prefix)
    bootstrap = runtime.settings.kafka_bootstrap
    ok_name, bad_name = f"metrics-ok-{uuid.uuid4().hex[:6]}", f"metrics-bad-{uuid.uuid4().hex[:6]}"
    runtime.apply(
        {
            "name": ok_name,
            "nodes": [
                task("a"),
                task("f", "flaky", depends_on=["a"], input={"fail_attempts": 1}, retry=FAST_RETRY),
            ],
        }
    )
    runtime.apply({"name": bad_name, "nodes": [task("bad", "test.fail")]})
    retries_before = value("kflow_step_retries_total", node_type="flaky")
    flaky_before = value("kflow_step_latency_seconds_count", node_type="flaky")
    fail_before = value("kflow_step_latency_seconds_count", node_type="test.fail")

    ids = [runtime.start(ok_name) for _ in range(3)] + [runtime.start(bad_name)]
    produce(bootstrap, names.commands, [(b"poison", b"not avro")])
    produce(bootstrap, names.tasks("default"), [(b"poison", b"not avro")])
    finals = runtime.wait_final(ids)
    assert [types_of(finals[w])[-1] for w in ids] == ["WorkflowCompleted"] * 3 + ["WorkflowFailed"]
    consume_all(bootstrap, names.dlq, min_records=2)

    def duration_count(name: str, outcome: str) -> float:
        return value("kflow_workflow_duration_seconds_count", name=name, outcome=outcome)

    eventually(lambda: duration_count(ok_name, "completed") == 3, "3 completed durations")
    eventually(lambda: duration_count(bad_name, "failed") == 1, "1 failed duration")
    eventually(lambda: value("kflow_workflows_in_flight") == 0, "no workflow in flight")
    # Exact counts: an aborted-and-retried batch must not count twice.
    assert value("kflow_step_retries_total", node_type="flaky") - retries_before == 3
    orchestrator_dlq = value(
        "kflow_dlq_records_total", component="orchestrator", source_topic=names.commands
    )
    assert orchestrator_dlq == 1
    assert value("kflow_events_in_total", component="orchestrator", topic=names.commands) == 5
    # a, f#1 and f#2 per completed workflow, bad#1 for the failed one
    assert value("kflow_events_in_total", component="orchestrator", topic=names.results) >= 10
    for topic in (names.events, names.tasks("default"), names.snapshots):
        assert value("kflow_events_out_total", component="orchestrator", topic=topic) > 0
    tasks_sent = value(
        "kflow_events_out_total", component="orchestrator", topic=names.tasks("default")
    )
    assert tasks_sent == 10

    topic = names.tasks("default")
    assert value("kflow_events_in_total", component="processor", topic=topic) >= tasks_sent + 1
    assert value("kflow_dlq_records_total", component="processor", source_topic=topic) == 1
    assert value("kflow_events_out_total", component="processor", topic=names.results) >= 10
    assert value("kflow_step_latency_seconds_count", node_type="flaky") - flaky_before == 6
    assert value("kflow_step_latency_seconds_count", node_type="test.fail") - fail_before == 1

    # The same figures over HTTP, as Prometheus scrapes them.
    server = serve_metrics(free_port())
    try:
        url = f"http://127.0.0.1:{server.server_port}/metrics"
        with urllib.request.urlopen(url, timeout=10) as response:
            text = response.read().decode()
    finally:
        server.shutdown()
        server.server_close()
    expected = f'kflow_workflow_duration_seconds_count{{name="{ok_name}",outcome="completed"}} 3.0'
    assert expected in text


def test_lag_refresher_sets_the_gauge_for_the_service_group(runtime: Runtime) -> None:
    runtime.apply({"name": "lag", "nodes": [task("a")]})
    wid = runtime.start("lag")
    runtime.wait_final([wid])
    group = f"{runtime.prefix}.orchestrator"
    refresher = LagRefresher(runtime.settings.kafka_bootstrap, group, interval_s=0.2)
    refresher.start()
    try:
        eventually(
            lambda: any(
                s.labels.get("group") == group
                for metric in REGISTRY.collect()
                if metric.name == "kflow_consumer_lag"
                for s in metric.samples
            ),
            f"a kflow_consumer_lag sample for {group}",
        )
    finally:
        refresher.stop()


def test_the_oldest_progress_age_grows_while_a_workflow_waits_and_resets_when_it_ends(
    runtime: Runtime,
) -> None:
    """KflowWorkflowsStuck's gauge: nothing serves queue ``other`` at first, so the step waits."""
    name = f"stuck-{uuid.uuid4().hex[:6]}"
    runtime.apply({"name": name, "nodes": [{"id": "a", "type": "echo", "queue": "other"}]})
    wid = runtime.start(name)
    runtime.wait_for(wid, "StepScheduled")
    metric = "kflow_workflow_oldest_progress_age_seconds"
    eventually(lambda: value(metric, name=name) > 0, "a positive age for the waiting workflow")
    first = value(metric, name=name)
    eventually(lambda: value(metric, name=name) > first, "the age to grow while nothing commits")
    runtime.start_processor("other")
    runtime.wait_final([wid])
    eventually(lambda: value(metric, name=name) == 0, "the age to drop to 0 once it completed")
