"""Outbox relay benchmark: enqueue rate, relay throughput by batch size, commit-to-publish latency.

Run against the local stack (``kflow dev up``)::

    .venv/bin/python bench/relay_bench.py              # 20,000 rows per throughput run
    .venv/bin/python bench/relay_bench.py --rows 5000  # quicker

It makes a ``bench_outbox_*`` schema and ``bench-relay-*`` topics and removes
both at the end. It prints the figures (ADR 0050 quotes them).
"""

from __future__ import annotations

import argparse
import functools
import statistics
import sys
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from kflow.bus.admin import create_topics, delete_topics  # noqa: E402
from kflow.bus.topics import topic_specs  # noqa: E402
from kflow.relay.outbox import enqueue_start, install  # noqa: E402
from kflow.relay.relay import Relay, RelayConfig  # noqa: E402
from kflow.settings import get_settings  # noqa: E402


def enqueue(dsn: str, rows: int, per_transaction: int = 500) -> float:
    """Insert ``rows`` outbox rows with the helper; returns rows per second."""
    started = time.perf_counter()
    with psycopg.connect(dsn) as conn:
        for start in range(0, rows, per_transaction):
            for i in range(start, min(rows, start + per_transaction)):
                enqueue_start(conn, name="bench", input={"order": i, "pad": "x" * 200})
            conn.commit()
    return rows / (time.perf_counter() - started)


def run_relays(config: RelayConfig, count: int, dsn: str) -> float:
    """Run ``count`` relays (threads) until the outbox is empty; returns rows per second."""
    rows = scalar(dsn, "SELECT count(*) FROM kflow_outbox WHERE published_at IS NULL")
    relays = [Relay(config) for _ in range(count)]
    threads = [threading.Thread(target=r.drain) for r in relays]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    for relay in relays:
        relay.close()
    left = scalar(dsn, "SELECT count(*) FROM kflow_outbox WHERE published_at IS NULL")
    assert left == 0, f"{left} rows left"
    return float(rows) / elapsed


def latency(config: RelayConfig, dsn: str, samples: int) -> list[float]:
    """Milliseconds from the business commit to the row marked published, one row at a time."""
    relay = Relay(config)
    thread = threading.Thread(target=relay.run)
    thread.start()
    out: list[float] = []
    try:
        with psycopg.connect(dsn) as conn, psycopg.connect(dsn, autocommit=True) as probe:

            def published_at(workflow_id: str) -> Any:
                row = probe.execute(
                    "SELECT extract(epoch FROM published_at) FROM kflow_outbox"
                    " WHERE workflow_id = %s",
                    (workflow_id,),
                ).fetchone()
                return row[0] if row else None

            for _ in range(samples):
                wait_for(relay.idle.is_set)
                workflow_id = enqueue_start(conn, name="bench", input={"x": 1})
                conn.commit()
                committed = time.time()
                published = wait_for(functools.partial(published_at, workflow_id))
                out.append((float(published) - committed) * 1000)
    finally:
        relay.stop()
        thread.join()
    return out


def wait_for(check: Callable[[], Any], timeout_s: float = 60) -> Any:
    deadline = time.monotonic() + timeout_s
    while not (value := check()):
        if time.monotonic() > deadline:
            raise TimeoutError("benchmark step did not finish")
        time.sleep(0.002)
    return value


def scalar(dsn: str, query: str, params: tuple[object, ...] | None = None) -> Any:
    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute(query.encode(), params).fetchone()
    return row[0] if row else None


def percentiles(values: list[float]) -> str:
    ordered = sorted(values)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    return f"p50 {statistics.median(ordered):.1f} ms  p99 {p99:.1f} ms  max {ordered[-1]:.1f} ms"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=20_000, help="rows per throughput run")
    parser.add_argument("--samples", type=int, default=100, help="latency samples")
    args = parser.parse_args()
    settings = get_settings()
    tag = uuid.uuid4().hex[:8]
    prefix, schema = f"bench-relay-{tag}", f"bench_outbox_{tag}"
    specs = topic_specs(prefix, settings.partitions, ())
    create_topics(settings.kafka_bootstrap, specs)
    with psycopg.connect(settings.database_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
    dsn = psycopg.conninfo.make_conninfo(settings.database_url, options=f"-c search_path={schema}")
    base = RelayConfig(dsn=dsn, bootstrap=settings.kafka_bootstrap, topic_prefix=prefix)
    try:
        with psycopg.connect(dsn, autocommit=True) as conn:
            install(conn)
        print(f"rows per run {args.rows}, partitions {settings.partitions}, 200-byte inputs")
        for batch in (100, 500, 2000):
            rate = enqueue(dsn, args.rows)
            relayed = run_relays(replace(base, batch_size=batch), 1, dsn)
            print(f"batch {batch:5}: enqueue {rate:8.0f} rows/s   relay {relayed:8.0f} rows/s")
        enqueue(dsn, args.rows)
        relayed = run_relays(replace(base, batch_size=500), 2, dsn)
        print(f"two relays (threads, one process), batch 500: {relayed:8.0f} rows/s")
        notified = latency(base, dsn, args.samples)
        print(f"commit -> published, NOTIFY wake-up: {percentiles(notified)}")
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute("ALTER TABLE kflow_outbox DISABLE TRIGGER kflow_outbox_inserted")
        polled = latency(replace(base, poll_interval_s=1.0), dsn, max(10, args.samples // 5))
        print(f"commit -> published, 1 s poll only:  {percentiles(polled)}")
    finally:
        with psycopg.connect(settings.database_url, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema)))
        delete_topics(settings.kafka_bootstrap, [s.name for s in specs])


if __name__ == "__main__":
    main()
