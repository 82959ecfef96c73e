"""The outbox relay: publish committed outbox rows as StartWorkflow commands, at least once.

One batch is one PostgreSQL transaction: claim up to ``batch_size`` unpublished
rows with ``FOR UPDATE SKIP LOCKED`` (so relays running side by side never take
the same row), produce them to ``{prefix}.commands`` keyed by workflow id, wait
for the broker's acknowledgements, then mark the delivered rows published and
commit. A crash after delivery and before the commit republishes the same bytes
(same workflow id, event id and idempotency key); the orchestrator answers the
second start with ``DuplicateStartIgnored``. See ADR 0050.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import psycopg
from confluent_kafka import KafkaError, KafkaException, Message, Producer

from kflow.bus.clients import ConfigValue, make_producer
from kflow.bus.message import TRACE_HEADER
from kflow.bus.signing import Signer
from kflow.bus.topics import topic_names
from kflow.core.limits import DEFAULT_LIMITS
from kflow.observability import tracing
from kflow.observability.health import HEALTH, STARTUP
from kflow.observability.metrics import DEPENDENCY_WAITS, EVENTS_OUT
from kflow.relay.errors import RowRejected
from kflow.relay.metrics import (
    OUTBOX_DELETED,
    OUTBOX_FAILED,
    OUTBOX_FAILED_ROWS,
    OUTBOX_LAG,
    OUTBOX_PENDING,
    OUTBOX_PUBLISH_ERRORS,
    OUTBOX_PUBLISHED,
)
from kflow.relay.outbox import CHANNEL, TABLE, dsn_location, has_trace_column, pending_backlog
from kflow.relay.rows import CLAIM_SQL, UNTRACED_CLAIM_SQL, EncodedRow, OutboxRow, encode_row

log = logging.getLogger(__name__)

# Delivery errors no retry can fix: the row is marked failed instead of blocking the outbox.
PERMANENT_DELIVERY_ERRORS = frozenset(
    {
        KafkaError.MSG_SIZE_TOO_LARGE,
        KafkaError.RECORD_LIST_TOO_LARGE,
        KafkaError.INVALID_RECORD,
        KafkaError.INVALID_MSG_SIZE,
    }
)
DELETE_CHUNK = 10_000
GAUGE_INTERVAL_S = 5.0


@dataclass(frozen=True, slots=True, kw_only=True)
class RelayConfig:
    """Where to read and publish, and how often."""

    dsn: str
    bootstrap: str
    topic_prefix: str
    batch_size: int = 500
    """Rows claimed, produced and marked in one transaction."""
    poll_interval_s: float = 1.0
    """Longest sleep between checks when no NOTIFY arrives (NOTIFY can be missed on reconnect)."""
    retention_s: float = 86_400.0
    """Published rows older than this are deleted (0 = at the next cleanup)."""
    cleanup_interval_s: float = 60.0
    """How often to delete old published rows and refresh the pending/lag gauges."""
    delivery_timeout_s: float = 15.0
    """Longest wait for the broker to acknowledge a batch before it is retried."""
    max_backoff_s: float = 30.0
    """Ceiling of the exponential backoff after a failed batch (broker or database down)."""
    max_payload_bytes: int = DEFAULT_LIMITS.max_payload_bytes
    signer: Signer | None = None
    """The key of the service owning the outbox: every row is signed with it, so the
    orchestrator refuses a row claiming another tenant (ADR 0060). None: unsigned."""
    producer_overrides: Mapping[str, ConfigValue] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class BatchOutcome:
    """What one batch did with the rows it claimed."""

    claimed: int = 0
    published: int = 0
    failed: int = 0
    """Rows marked failed (never publishable as they are)."""
    deferred: int = 0
    """Rows left unpublished for the next try (delivery failed for a transient reason)."""
    error: str | None = None
    """The first transient delivery error, if any."""


class _Backoff:
    """Exponential backoff with full jitter, reset by a success."""

    def __init__(self, ceiling_s: float, base_s: float = 0.2) -> None:
        self.ceiling_s, self.base_s, self.failures = ceiling_s, base_s, 0

    def next_delay(self) -> float:
        self.failures += 1
        cap = min(self.ceiling_s, self.base_s * 2 ** min(self.failures, 20))
        return random.uniform(cap / 2, cap)

    def reset(self) -> None:
        self.failures = 0


class Relay:
    """Publishes outbox rows until :meth:`stop`; several relays may share one table."""

    def __init__(self, config: RelayConfig) -> None:
        self.config = config
        self.topic = topic_names(config.topic_prefix).commands
        self._stop = threading.Event()
        self._producer: Producer | None = None
        self._producer_or_new()  # bad Kafka settings fail here, not in the loop
        self._conn: psycopg.Connection[Any] | None = None
        self._claim_sql = CLAIM_SQL
        self._listen: psycopg.Connection[Any] | None = None
        self._backoff = _Backoff(config.max_backoff_s)
        self._next_cleanup = 0.0
        self._next_gauges = 0.0
        self.published_total = 0
        """Rows this relay published and marked since it was created."""
        self.idle = threading.Event()
        """Set while :meth:`run` waits for a NOTIFY or the poll interval."""

    # -- one batch -------------------------------------------------------------------------

    def relay_batch(self) -> BatchOutcome:
        """Claim, publish and mark one batch in one transaction; returns what happened."""
        conn = self._connection()
        producer = self._producer_or_new()
        with conn.transaction():
            rows = [
                OutboxRow.from_tuple(r)
                for r in conn.execute(self._claim_sql, (self.config.batch_size,)).fetchall()
            ]
            if not rows:
                return BatchOutcome()
            rejected: dict[int, str] = {}
            encoded: list[EncodedRow] = []
            for row in rows:
                try:
                    encoded.append(
                        encode_row(row, self.config.max_payload_bytes, self.config.signer)
                    )
                except RowRejected as e:
                    rejected[row.id] = str(e)
                except Exception as e:  # a bug must not stall every row behind this one
                    log.exception("outbox row %s could not be encoded", row.id)
                    rejected[row.id] = f"record: could not be encoded ({type(e).__name__}: {e})"
            delivered, deferred = self._publish(producer, encoded, rejected)
            self._mark(conn, delivered, rejected, deferred)
        outcome = BatchOutcome(
            claimed=len(rows),
            published=len(delivered),
            failed=len(rejected),
            deferred=len(deferred),
            error=next(iter(deferred.values()), None),
        )
        self.published_total += outcome.published
        OUTBOX_PUBLISHED.inc(outcome.published)
        EVENTS_OUT.labels("relay", self.topic).inc(outcome.published)
        for row_id, reason in rejected.items():
            OUTBOX_FAILED.labels(_reason_label(reason)).inc()
            log.error("outbox row id=%s marked failed: %s", row_id, reason)
        if deferred:
            OUTBOX_PUBLISH_ERRORS.inc()
        return outcome

    def _relay_spans(self, encoded: list[EncodedRow]) -> dict[int, tracing.Span]:
        """A producer span per row, child of the span that wrote it, until the broker's ack."""
        return {
            item.row.id: tracing.tracer().start_span(
                "relay StartWorkflow",
                context=tracing.context_of(item.row.traceparent),
                kind=tracing.SpanKind.PRODUCER,
                attributes={
                    "messaging.system": "kafka",
                    "messaging.operation.type": "send",
                    "messaging.destination.name": self.topic,
                    "kflow.workflow_id": item.row.workflow_id,
                    "kflow.outbox_row_id": item.row.id,
                },
            )
            for item in encoded
        }

    def _publish(
        self, producer: Producer, encoded: list[EncodedRow], rejected: dict[int, str]
    ) -> tuple[list[int], dict[int, str]]:
        """Produce every row and wait for its ack: (delivered ids, deferred id -> error)."""
        results: dict[int, KafkaError | None] = {}

        def on_delivery(row_id: int) -> Any:
            def record(err: KafkaError | None, _msg: Message) -> None:
                results[row_id] = err

            return record

        spans = self._relay_spans(encoded) if tracing.on() else {}
        for item in encoded:
            headers = dict[str, str | bytes | None](item.headers)
            span = spans.get(item.row.id)
            if span is not None:
                headers[TRACE_HEADER] = tracing.traceparent_of(span)
            while True:
                try:
                    producer.produce(
                        self.topic,
                        value=item.value,
                        key=item.key,
                        headers=headers,
                        on_delivery=on_delivery(item.row.id),
                    )
                    break
                except BufferError:
                    producer.poll(0.05)
                except KafkaException as e:
                    results[item.row.id] = e.args[0]
                    break
        producer.flush(self.config.delivery_timeout_s + 5)
        for row_id, span in spans.items():
            if results.get(row_id, True) is not None:
                span.set_status(tracing.StatusCode.ERROR, "not delivered")
            span.end()
        delivered: list[int] = []
        deferred: dict[int, str] = {}
        for item in encoded:
            row_id = item.row.id
            if row_id not in results:
                deferred[row_id] = "no delivery report before the timeout"
                continue
            err = results[row_id]
            if err is None:
                delivered.append(row_id)
            elif err.code() in PERMANENT_DELIVERY_ERRORS:
                rejected[row_id] = f"record: {len(item.value)} bytes refused by Kafka: {err.str()}"
            else:
                deferred[row_id] = f"{err.name()}: {err.str()}"
                if err.fatal():
                    self._producer = None  # a fatal idempotence error needs a new producer
        return delivered, deferred

    def _mark(
        self,
        conn: psycopg.Connection[Any],
        delivered: list[int],
        rejected: dict[int, str],
        deferred: dict[int, str],
    ) -> None:
        if delivered:
            conn.execute(
                f"UPDATE {TABLE} SET published_at = clock_timestamp(), attempts = attempts + 1,"
                " last_error = NULL WHERE id = ANY(%s)",
                (delivered,),
            )
        for ids, state in ((rejected, "failed_at = clock_timestamp(), "), (deferred, "")):
            if ids:
                conn.execute(
                    f"UPDATE {TABLE} AS o SET {state}attempts = o.attempts + 1,"
                    " last_error = r.reason FROM unnest(%s::bigint[], %s::text[]) AS r(id, reason)"
                    " WHERE o.id = r.id",
                    (list(ids), list(ids.values())),
                )

    # -- housekeeping ----------------------------------------------------------------------

    def delete_published(self) -> int:
        """Delete published rows older than the retention, in chunks; returns how many."""
        conn = self._connection()
        total = 0
        while True:
            with conn.transaction():
                cur = conn.execute(
                    f"DELETE FROM {TABLE} WHERE id IN (SELECT id FROM {TABLE}"
                    " WHERE published_at < clock_timestamp() - make_interval(secs => %s)"
                    " ORDER BY published_at LIMIT %s FOR UPDATE SKIP LOCKED)",
                    (self.config.retention_s, DELETE_CHUNK),
                )
            total += cur.rowcount
            if cur.rowcount < DELETE_CHUNK:
                break
        OUTBOX_DELETED.inc(total)
        return total

    def refresh_gauges(self) -> None:
        """Set the pending, failed and lag gauges (reads only the partial indexes' rows)."""
        conn = self._connection()
        with conn.transaction():
            backlog = pending_backlog(conn)
        OUTBOX_PENDING.set(backlog.pending)
        OUTBOX_FAILED_ROWS.set(backlog.failed)
        OUTBOX_LAG.set(backlog.oldest_pending_age_s)

    # -- loop ------------------------------------------------------------------------------

    def drain(self) -> int:
        """Run batches until none is claimable or one defers; returns rows published."""
        published = 0
        while not self._stop.is_set():
            outcome = self.relay_batch()
            published += outcome.published
            if outcome.claimed < self.config.batch_size or outcome.deferred:
                break
        return published

    def run(self) -> None:
        """Publish until :meth:`stop`; survives broker and database outages by retrying."""
        log.info(
            "relaying %s %s -> %s at %s",
            dsn_location(self.config.dsn),
            TABLE,
            self.topic,
            self.config.bootstrap,
        )
        HEALTH.report(STARTUP, True)
        while not self._stop.is_set():
            try:
                outcome = self.relay_batch()
                self._housekeeping()
                HEALTH.report("postgresql", True)
                if outcome.deferred:
                    HEALTH.report("kafka", False, f"rows not delivered: {outcome.error}")
                    self._pause(
                        f"{outcome.deferred} row(s) not delivered: {outcome.error}", "kafka"
                    )
                    continue
                HEALTH.report("kafka", True)
                self._backoff.reset()
                if outcome.claimed < self.config.batch_size:  # else more rows are waiting
                    self._wait_for_rows()
            except psycopg.Error as e:
                HEALTH.report("postgresql", False, f"{type(e).__name__}: {e}")
                self._drop_connections()
                self._pause(f"database error: {e}", "postgresql")
            except KafkaException as e:
                HEALTH.report("kafka", False, str(e))
                self._producer = None
                self._pause(f"Kafka error: {e}", "kafka")
        self.close()

    def _housekeeping(self) -> None:
        now = time.monotonic()
        if now >= self._next_gauges:
            self.refresh_gauges()
            self._next_gauges = now + GAUGE_INTERVAL_S
        if now >= self._next_cleanup:
            self.delete_published()
            self._next_cleanup = now + self.config.cleanup_interval_s

    def stop(self) -> None:
        """Ask :meth:`run` to return after the current batch (safe from a signal handler)."""
        self._stop.set()

    def close(self) -> None:
        """Flush the producer and close the database connections."""
        if self._producer is not None:
            self._producer.flush(5)
            self._producer = None
        self._drop_connections()

    def _pause(self, why: str, dependency: str) -> None:
        DEPENDENCY_WAITS.labels("relay", dependency).inc()
        delay = self._backoff.next_delay()
        log.warning("%s; retrying in %.1fs", why, delay)
        self._stop.wait(delay)

    def _wait_for_rows(self) -> None:
        """Block until a NOTIFY arrives, the poll interval passes, or :meth:`stop` is called."""
        listen = self._listener()
        deadline = time.monotonic() + self.config.poll_interval_s
        self.idle.set()
        try:
            while not self._stop.is_set():
                left = deadline - time.monotonic()
                if left <= 0:
                    return
                # Short slices keep stop() responsive; a notification ends the wait at once.
                for _ in listen.notifies(timeout=min(left, 0.25), stop_after=1):
                    return
        finally:
            self.idle.clear()

    # -- connections -----------------------------------------------------------------------

    def _connection(self) -> psycopg.Connection[Any]:
        if self._conn is None or self._conn.closed:
            self._conn = psycopg.connect(
                self.config.dsn, autocommit=True, application_name="kflow-relay", connect_timeout=10
            )
            # a table installed before tracing has no traceparent column (ADR 0037)
            self._claim_sql = CLAIM_SQL if has_trace_column(self._conn) else UNTRACED_CLAIM_SQL
        return self._conn

    def _listener(self) -> psycopg.Connection[Any]:
        if self._listen is None or self._listen.closed:
            self._listen = psycopg.connect(
                self.config.dsn,
                autocommit=True,
                application_name="kflow-relay-listen",
                connect_timeout=10,
            )
            self._listen.execute(f"LISTEN {CHANNEL}")
        return self._listen

    def _drop_connections(self) -> None:
        for conn in (self._conn, self._listen):
            if conn is not None and not conn.closed:
                conn.close()
        self._conn = self._listen = None

    def _producer_or_new(self) -> Producer:
        if self._producer is None:
            overrides: dict[str, ConfigValue] = {
                "linger.ms": 2,
                "message.timeout.ms": int(self.config.delivery_timeout_s * 1000),
                **self.config.producer_overrides,
            }
            self._producer = make_producer(self.config.bootstrap, overrides=overrides)
        return self._producer


def _reason_label(reason: str) -> str:
    """A bounded metric label for a failure reason: the field it names, else ``other``."""
    head = reason.split(":", 1)[0]
    return head if head in _REASON_LABELS else "other"


_REASON_LABELS = frozenset(
    {
        "workflow_id",
        "name",
        "input",
        "tenant",
        "actor",
        "correlation_id",
        "idempotency_key",
        "record",
    }
)
