"""Every kflow Prometheus metric, defined once; services import the objects from here.

Label values must come from small, fixed sets (node types, workflow names,
outcomes, topics), never from ids, so the series count stays bounded.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Protocol

from prometheus_client import REGISTRY, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from wsgiref.simple_server import WSGIServer

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
DEPENDENCY_UP = Gauge(
    "kflow_dependency_up",
    "1 while the dependency (kafka, redis, postgres) answers this component, else 0.",
    ["component", "dependency"],
)
DEPENDENCY_WAITS = Counter(
    "kflow_dependency_waits_total",
    "Backoff waits for an unavailable dependency (the work waits; no retry budget is spent).",
    ["component", "dependency"],
)
TRANSACTIONS_STALLED = Gauge(
    "kflow_transactions_stalled_seconds",
    "Seconds since the exactly-once loop's transactions began failing (0 while they commit).",
    ["component"],
)
TRANSACTION_RECOVERIES = Counter(
    "kflow_transaction_recoveries_total",
    "Recovery steps of the exactly-once loop: abort, commit_resumed, new_producer, reload "
    "(state read back from the log after a commit of unknown outcome; ADR 0008).",
    ["component", "action"],
)
CLIENT_FATAL = Counter(
    "kflow_kafka_client_fatal_total",
    "Fatal Kafka client errors (the client was recreated or the process exited non-zero).",
    ["component", "client"],
)


class ProgressSource(Protocol):
    """An orchestrator's view: workflow name -> since when (ms) its oldest running workflow
    has waited for progress (None: none waits now), and the adapter's clock."""

    def oldest_by_name(self) -> Mapping[str, int | None]: ...

    def now_ms(self) -> int: ...


class _OldestProgress(Collector):
    """``kflow_workflow_oldest_progress_age_seconds{name}``, computed when scraped.

    Each orchestrator registers its :class:`ProgressSource`; the age is the source's clock
    minus the recorded time (``kflow.core.views.awaiting_progress_since``), so it keeps
    growing while nothing commits. A name the orchestrator has run is 0 when nothing of it
    waits, so the series exists (and an alert on it can be evaluated) from the first workflow.
    """

    NAME = "kflow_workflow_oldest_progress_age_seconds"

    def __init__(self) -> None:
        self._sources: weakref.WeakSet[ProgressSource] = weakref.WeakSet()
        self._lock = threading.Lock()

    def track(self, source: ProgressSource) -> None:
        """Include ``source`` while it exists."""
        with self._lock:
            self._sources.add(source)

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily(
            self.NAME,
            "Age of the oldest running workflow's wait for its next event, by workflow name "
            "(paused workflows and steps waiting for a review or a signal are not counted).",
            labels=["name"],
        )
        ages: dict[str, float] = {}
        with self._lock:
            sources = list(self._sources)
        for source in sources:
            now = source.now_ms()
            for name, since in source.oldest_by_name().items():
                age = 0.0 if since is None else max(0, now - since) / 1000
                ages[name] = max(ages.get(name, 0.0), age)
        for name in sorted(ages):
            family.add_metric([name], ages[name])
        yield family


OLDEST_PROGRESS = _OldestProgress()
REGISTRY.register(OLDEST_PROGRESS)


def serve_metrics(port: int, addr: str = "127.0.0.1") -> WSGIServer:
    """Expose ``/metrics``, ``/healthz`` and ``/readyz`` on ``addr:port`` from a daemon thread
    (for non-HTTP services; see :mod:`kflow.observability.health`); ``shutdown()`` on the
    returned server stops it."""
    from kflow.observability.health import serve_health

    return serve_health(port, addr)
