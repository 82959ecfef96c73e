"""Every kflow Prometheus metric, defined once; services import the objects from here.

Label values must come from small, fixed sets (node types, workflow names,
outcomes, topics), never from ids, so the series count stays bounded.
"""

from __future__ import annotations

from wsgiref.simple_server import WSGIServer

from prometheus_client import Counter, Gauge, Histogram, start_http_server

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)
_DURATION_BUCKETS = (0.05, 0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600, 86400)

CONSUMER_LAG = Gauge(
    "kflow_consumer_lag",
    "Records between the group's committed offset and the partition's end offset.",
    ["group", "topic", "partition"],
)
QUEUE_WAITING = Gauge(
    "kflow_queue_waiting_tasks",
    "Task offsets on a queue its processors have not consumed (0: nothing left to consume).",
    ["queue"],
)
QUEUE_PROCESSORS = Gauge(
    "kflow_queue_processors", "Members of the queue's processor consumer group now.", ["queue"]
)
QUEUE_UNSERVED = Gauge(
    "kflow_queue_unserved",
    "1 while tasks wait on a queue that no processor consumes (alert on it), else 0.",
    ["queue"],
)
EVENTS_IN = Counter(
    "kflow_events_in_total",
    "Records consumed, by component (orchestrator, processor, projector-postgres, ...) and topic.",
    ["component", "topic"],
)
EVENTS_OUT = Counter(
    "kflow_events_out_total",
    "Records produced, by component and topic.",
    ["component", "topic"],
)
STEP_LATENCY = Histogram(
    "kflow_step_latency_seconds",
    "Time one step attempt took in a node processor, by node type.",
    ["node_type"],
    buckets=_LATENCY_BUCKETS,
)
WORKFLOW_DURATION = Histogram(
    "kflow_workflow_duration_seconds",
    "Start to terminal event, by workflow name and outcome (completed, failed, cancelled).",
    ["name", "outcome"],
    buckets=_DURATION_BUCKETS,
)
STEP_RETRIES = Counter(
    "kflow_step_retries_total",
    "Step retries scheduled, by node type.",
    ["node_type"],
)
DLQ_RECORDS = Counter(
    "kflow_dlq_records_total",
    "Records sent to the dead-letter topic, by component and source topic.",
    ["component", "source_topic"],
)
PROJECTION_DELAY = Histogram(
    "kflow_projection_delay_seconds",
    "Event time to the moment its projection transaction committed.",
    ["projection"],
    buckets=_LATENCY_BUCKETS,
)
PROJECTION_BATCH = Histogram(
    "kflow_projection_batch_seconds",
    "Time to apply one batch (one database transaction or Redis pipeline).",
    ["projection"],
    buckets=_LATENCY_BUCKETS,
)
PROJECTION_ERRORS = Counter(
    "kflow_projection_errors_total",
    "Batches that failed and were retried, by projection and reason.",
    ["projection", "reason"],
)
WORKFLOWS_IN_FLIGHT = Gauge(
    "kflow_workflows_in_flight",
    "Workflows started and not yet terminal, as held by this orchestrator process.",
)
API_REQUESTS = Counter(
    "kflow_api_requests_total",
    "Read-model API responses, by route template, method and status code.",
    ["route", "method", "status"],
)
API_LATENCY = Histogram(
    "kflow_api_request_seconds",
    "Read-model API request time, by route template and method.",
    ["route", "method"],
    buckets=_LATENCY_BUCKETS,
)
SSE_CLIENTS = Gauge("kflow_sse_clients", "Open live event streams.")


def serve_metrics(port: int, addr: str = "127.0.0.1") -> WSGIServer:
    """Expose ``/metrics`` on ``addr:port`` from a daemon thread (for non-HTTP services);
    ``shutdown()`` on the returned server stops it."""
    server, _ = start_http_server(port, addr=addr)
    return server
