"""Prometheus metrics of the outbox relay (bounded labels: no ids)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

OUTBOX_PUBLISHED = Counter(
    "kflow_outbox_published_total",
    "Outbox rows published to the commands topic and marked published.",
)
OUTBOX_FAILED = Counter(
    "kflow_outbox_failed_total",
    "Outbox rows marked failed (they cannot be encoded or are too large), by reason.",
    ["reason"],
)
OUTBOX_PUBLISH_ERRORS = Counter(
    "kflow_outbox_publish_errors_total",
    "Batches whose delivery failed for a reason a retry can fix (broker down, no topic).",
)
OUTBOX_PENDING = Gauge(
    "kflow_outbox_pending_rows",
    "Outbox rows not yet published (failed rows excluded).",
)
OUTBOX_FAILED_ROWS = Gauge(
    "kflow_outbox_failed_rows",
    "Outbox rows marked failed and waiting for an operator (kflow outbox status / retry).",
)
OUTBOX_LAG = Gauge(
    "kflow_outbox_lag_seconds",
    "Age of the oldest unpublished outbox row (0 when none is waiting).",
)
OUTBOX_DELETED = Counter(
    "kflow_outbox_deleted_total",
    "Published outbox rows deleted after the retention period.",
)
