"""One trace per workflow, on the real Kafka, PostgreSQL and Redis (ADR 0037).

The API (uvicorn on a thread), an orchestrator and a processor run in this process and
share one in-memory exporter, so the test sees every span each of them made.
"""

from __future__ import annotations

import http.server
import json
import logging
import threading
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import psycopg
import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanKind, StatusCode

from kflow.bus.credentials import command_signer
from kflow.bus.message import TRACE_HEADER
from kflow.bus.reader import read_key
from kflow.bus.topics import topic_names
from kflow.client import Client
from kflow.observability import tracing
from kflow.observability.logging import JsonFormatter
from kflow.processor.context import StepContext
from kflow.processor.registry import node
from kflow.relay.errors import OutboxInputError
from kflow.relay.outbox import enqueue_start, install
from kflow.relay.relay import Relay, RelayConfig
from tests.kafka_helpers import consume_all
from tests.readside.conftest import ApiServer, ReadSide, free_port
from tests.runtime.conftest import TEST_QUEUES, Runtime, types_of
from tests.tracing.conftest import Spans

pytestmark = [pytest.mark.integration, pytest.mark.topics(partitions=2, queues=TEST_QUEUES)]

FAST_RETRY = {"max_attempts": 3, "initial_delay_ms": 10, "multiplier": 2.0, "jitter": 0.0}
PIPELINE = {
    "name": "traced",
    "nodes": [
        {"id": "a", "type": "echo", "queue": "default", "input": {"x": "$input.x"}},
        {
            "id": "b",
            "type": "flaky",
            "queue": "default",
            "depends_on": ["a"],
            "input": {"fail_attempts": 1},
            "retry": FAST_RETRY,
        },
        {"id": "c", "type": "echo", "queue": "default", "depends_on": ["b"], "input": {"y": 2}},
    ],
}
DECISIONS = [  # a, b (fails), retry timer, b again, c: every decision of the run, in order
    "decide StartWorkflow",
    "decide StepResult",
    "decide StepError",
    "decide TimerFired",
    "decide StepResult",
    "decide StepResult",
]


@pytest.fixture
def traced_api(spans: Spans, readside: ReadSide) -> Iterator[ApiServer]:
    """The API made while tracing is on (it is instrumented when created)."""
    server = ApiServer(readside)
    yield server
    server.close()


@pytest.fixture
def runtime(runtime_factory: Runtime) -> Runtime:
    runtime_factory.start_orchestrator()
    runtime_factory.start_processor("default")
    runtime_factory.apply(PIPELINE)
    return runtime_factory


def _parent(span: ReadableSpan) -> int | None:
    return span.parent.span_id if span.parent is not None else None


def _id(span: ReadableSpan) -> int:
    assert span.context is not None
    return int(span.context.span_id)


def _trace(span: ReadableSpan) -> int:
    assert span.context is not None
    return int(span.context.trace_id)


def _traceparent(span: ReadableSpan) -> str:
    assert span.context is not None
    flags = int(span.context.trace_flags)
    return f"00-{_trace(span):032x}-{_id(span):016x}-{flags:02x}"


def _check_workflow_trace(spans: Spans, workflow_id: str, send: ReadableSpan) -> None:
    """Decisions and step attempts of ``workflow_id`` form one chain under ``send``."""
    ours = sorted(spans.of_workflow(workflow_id), key=lambda s: s.start_time or 0)
    assert {_trace(s) for s in ours} == {_trace(send)}
    decisions = [s for s in ours if s.name.startswith("decide ")]
    steps = [s for s in ours if s.name.startswith("step ")]
    assert [s.name for s in decisions] == DECISIONS
    assert [(s.name, (s.attributes or {})["kflow.attempt"]) for s in steps] == [
        ("step a", 1),
        ("step b", 1),
        ("step b", 2),
        ("step c", 1),
    ]
    assert steps[1].status.status_code is StatusCode.ERROR  # the failed attempt
    assert (steps[1].attributes or {})["kflow.error_class"] == "transient"
    assert all(s.status.status_code is not StatusCode.ERROR for s in (steps[0], *steps[2:]))
    assert all(s.kind is SpanKind.CONSUMER for s in steps)
    # each span's parent is what caused it: the command, a task, a result, the last decision
    start, after_a, error, timer, after_b, after_c = decisions
    chain = [
        (start, send),
        (steps[0], start),
        (after_a, steps[0]),
        (steps[1], after_a),
        (error, steps[1]),
        (timer, error),
        (steps[2], timer),
        (after_b, steps[2]),
        (steps[3], after_b),
        (after_c, steps[3]),
    ]
    for child, parent in chain:
        assert _parent(child) == _id(parent), f"{child.name}'s parent is not {parent.name}"
    produced = (after_c.attributes or {})["kflow.events"]
    assert isinstance(produced, tuple) and "WorkflowCompleted" in produced


def _records_trace_ids(runtime: Runtime, workflow_id: str) -> set[str | None]:
    """The trace id in the ``traceparent`` header of each of the workflow's events."""
    topic = topic_names(runtime.prefix).events
    found: set[str | None] = set()
    for record in read_key(runtime.settings.kafka_bootstrap, topic, workflow_id):
        value = record.headers.get(TRACE_HEADER)
        found.add(value.decode().split("-")[1] if value else None)
    return found


def test_one_trace_from_post_workflows_through_every_step(
    spans: Spans,
    traced_api: ApiServer,
    runtime: Runtime,
    make_key: Callable[..., str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="kflow.api.access")
    caplog.handler.setFormatter(JsonFormatter())
    workflow_id = f"tr-{uuid.uuid4().hex[:8]}"
    response = httpx.post(
        f"{traced_api.url}/workflows",
        json={"name": "traced", "version": 1, "input": {"x": 7}, "workflow_id": workflow_id},
        headers={"Authorization": f"Bearer {make_key('default', 'write')}"},
        timeout=30,
    )
    assert response.status_code == 202, response.text
    events = runtime.wait_final([workflow_id])[workflow_id]
    assert types_of(events)[-1] == "WorkflowCompleted"

    (server,) = [s for s in spans.all() if s.kind is SpanKind.SERVER]
    assert server.name == "POST /workflows"
    assert not [s for s in spans.all() if s.name.startswith("POST /workflows http")]
    (send,) = spans.named("send StartWorkflow")
    assert _parent(send) == _id(server) and _trace(send) == _trace(server)
    assert send.kind is SpanKind.PRODUCER
    _check_workflow_trace(spans, workflow_id, send)
    # the log itself carries the trace: every event names it in its traceparent header
    assert _records_trace_ids(runtime, workflow_id) == {f"{_trace(server):032x}"}
    # and so does the API's access log line of the request
    (access,) = [
        json.loads(line) for line in caplog.text.splitlines() if '"path": "/workflows"' in line
    ]
    assert access["trace_id"] == f"{_trace(server):032x}" and access["status"] == 202


def test_a_traceparent_sent_to_the_api_is_the_root(
    spans: Spans, traced_api: ApiServer, runtime: Runtime, make_key: Callable[..., str]
) -> None:
    caller = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    workflow_id = f"tr-{uuid.uuid4().hex[:8]}"
    response = httpx.post(
        f"{traced_api.url}/workflows",
        json={"name": "traced", "version": 1, "input": {"x": 1}, "workflow_id": workflow_id},
        headers={"Authorization": f"Bearer {make_key('default', 'write')}", "traceparent": caller},
        timeout=30,
    )
    assert response.status_code == 202, response.text
    runtime.wait_final([workflow_id])
    (send,) = spans.named("send StartWorkflow")
    assert f"{_trace(send):032x}" == "0af7651916cd43dd8448eb211c80319c"
    _check_workflow_trace(spans, workflow_id, send)


def test_client_start_continues_the_callers_trace(spans: Spans, runtime: Runtime) -> None:
    workflow_id = f"tr-{uuid.uuid4().hex[:8]}"
    with (
        tracing.tracer().start_as_current_span("checkout") as caller,
        Client(runtime.settings, actor="billing") as client,
    ):
        handle = client.start("traced", {"x": 3}, id=workflow_id)
        assert handle.result(timeout=90) is not None
    (send,) = spans.named("send StartWorkflow")
    assert _parent(send) == caller.get_span_context().span_id
    _check_workflow_trace(spans, workflow_id, send)


def test_outbox_row_carries_its_writers_trace_through_the_relay(
    spans: Spans, runtime: Runtime, pg_dsn: str
) -> None:
    schema = f"outbox_{uuid.uuid4().hex[:10]}"
    dsn = psycopg.conninfo.make_conninfo(pg_dsn, options=f"-c search_path={schema}")
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}".encode())
    with psycopg.connect(dsn, autocommit=True) as conn:
        install(conn)
    workflow_id = f"tr-{uuid.uuid4().hex[:8]}"
    with (
        tracing.tracer().start_as_current_span("place order") as writer,
        psycopg.connect(dsn) as conn,
        conn.transaction(),
    ):
        enqueue_start(conn, name="traced", input={"x": 5}, workflow_id=workflow_id)
    relay = Relay(
        RelayConfig(
            dsn=dsn,
            bootstrap=runtime.settings.kafka_bootstrap,
            topic_prefix=runtime.prefix,
            signer=command_signer(runtime.settings),
        )
    )
    try:
        assert relay.relay_batch().published == 1
    finally:
        relay.close()
    runtime.wait_final([workflow_id])
    decisions = [s for s in spans.of_workflow(workflow_id) if s.name.startswith("decide ")]
    start = min(decisions, key=lambda s: s.start_time or 0)
    assert start.name == "decide StartWorkflow"
    (relayed,) = spans.named("relay StartWorkflow")
    assert relayed.kind is SpanKind.PRODUCER
    assert _parent(relayed) == writer.get_span_context().span_id
    _check_workflow_trace(spans, workflow_id, relayed)
    assert {_trace(s) for s in spans.of_workflow(workflow_id)} == {
        writer.get_span_context().trace_id
    }


def test_tracing_off_writes_no_trace_headers_and_no_spans(runtime: Runtime) -> None:
    assert not tracing.on()
    workflow_id = runtime.start("traced", {"x": 1})
    assert types_of(runtime.wait_final([workflow_id])[workflow_id])[-1] == "WorkflowCompleted"
    assert _records_trace_ids(runtime, workflow_id) == {None}
    names = topic_names(runtime.prefix)
    for topic in (names.tasks("default"), names.results, names.snapshots):
        records = consume_all(runtime.settings.kafka_bootstrap, topic, min_records=3)
        assert records and not [r for r in records if dict(r.headers() or {}).get(TRACE_HEADER)]


def test_a_restarted_orchestrator_continues_the_trace_from_the_snapshot(
    spans: Spans, runtime_factory: Runtime
) -> None:
    rt = runtime_factory
    first = rt.start_orchestrator()
    rt.start_processor("default")
    slow_retry = {**FAST_RETRY, "initial_delay_ms": 1500}
    rt.apply(
        {
            "name": "restarted",
            "nodes": [
                {
                    "id": "f",
                    "type": "flaky",
                    "queue": "default",
                    "input": {"fail_attempts": 1},
                    "retry": slow_retry,
                }
            ],
        }
    )
    workflow_id = rt.start("restarted")
    rt.wait_for(workflow_id, "StepRetryScheduled")
    first.stop()  # the retry timer is pending: the next orchestrator knows it from the snapshot
    for service, thread in rt.orchestrators:
        thread.join(30)
        assert not thread.is_alive(), service
    rt.orchestrators.clear()
    restarted = rt.start_orchestrator()
    assert types_of(rt.wait_final([workflow_id])[workflow_id])[-1] == "WorkflowCompleted"
    assert restarted.handler.stats.restored >= 1
    ours = sorted(spans.of_workflow(workflow_id), key=lambda s: s.start_time or 0)
    (error,) = [s for s in ours if s.name == "decide StepError"]
    (timer,) = [s for s in ours if s.name == "decide TimerFired"]
    assert _parent(timer) == _id(error)
    assert {_trace(s) for s in ours} == {_trace(error)}


def test_an_outbox_table_from_before_tracing_still_works_and_says_how_to_upgrade(
    spans: Spans, runtime: Runtime, pg_dsn: str
) -> None:
    schema = f"outbox_{uuid.uuid4().hex[:10]}"
    dsn = psycopg.conninfo.make_conninfo(pg_dsn, options=f"-c search_path={schema}")
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}".encode())
    with psycopg.connect(dsn, autocommit=True) as conn:
        install(conn)
        conn.execute(b"ALTER TABLE kflow_outbox DROP COLUMN traceparent")  # as installed before
    with (
        tracing.tracer().start_as_current_span("place order"),
        psycopg.connect(dsn) as conn,
        pytest.raises(OutboxInputError, match="kflow outbox install"),
    ):
        enqueue_start(conn, name="traced", input={"x": 5})
    with psycopg.connect(dsn) as conn, conn.transaction():
        workflow_id = enqueue_start(conn, name="traced", input={"x": 5})  # no span: no column
    relay = Relay(
        RelayConfig(
            dsn=dsn,
            bootstrap=runtime.settings.kafka_bootstrap,
            topic_prefix=runtime.prefix,
            signer=command_signer(runtime.settings),
        )
    )
    try:
        assert relay.relay_batch().published == 1
    finally:
        relay.close()
    assert types_of(runtime.wait_final([workflow_id])[workflow_id])[-1] == "WorkflowCompleted"
    with psycopg.connect(dsn, autocommit=True) as conn:
        install(conn)  # the upgrade: the column is back
        with tracing.tracer().start_as_current_span("place order"), conn.transaction():
            enqueue_start(conn, name="traced", input={"x": 6})
        row = conn.execute(b"SELECT count(traceparent) FROM kflow_outbox").fetchone()
        assert row == (1,)


SEEN: dict[str, str | None] = {}


@node("test.trace_probe", replace=True)
def trace_probe(value: dict[str, Any], ctx: StepContext) -> dict[str, Any]:
    """Records the context it was given and makes a span of its own (a node's instrumentation)."""
    SEEN[ctx.step_key] = ctx.traceparent
    with tracing.tracer().start_as_current_span("node's own work"):
        return {"ok": True}


class _Headers(http.server.BaseHTTPRequestHandler):
    seen: list[str | None] = []

    def do_GET(self) -> None:
        self.seen.append(self.headers.get("traceparent"))
        body = b'{"ok": true}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        del format, args


def test_nodes_get_the_attempt_context_and_the_http_node_sends_it(
    spans: Spans, runtime: Runtime
) -> None:
    seen: list[str | None] = []
    handler = type("Headers", (_Headers,), {"seen": seen})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        runtime.apply(
            {
                "name": "probed",
                "nodes": [
                    {"id": "probe", "type": "test.trace_probe", "queue": "default"},
                    {
                        "id": "call",
                        "type": "http",
                        "queue": "default",
                        "depends_on": ["probe"],
                        "input": {"url": f"http://127.0.0.1:{server.server_port}/x"},
                    },
                ],
            }
        )
        workflow_id = runtime.start("probed")
        assert types_of(runtime.wait_final([workflow_id])[workflow_id])[-1] == "WorkflowCompleted"
    finally:
        server.shutdown()
        thread.join(10)
        server.server_close()
    (probe,) = spans.named("step probe")
    (call,) = spans.named("step call")
    (own,) = spans.named("node's own work")
    assert _parent(own) == _id(probe)  # the step's span is current while the node runs
    assert SEEN[f"{workflow_id}/probe"] == _traceparent(probe)
    assert seen == [_traceparent(call)]
