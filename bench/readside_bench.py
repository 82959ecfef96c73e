"""Read-side benchmark: projection throughput, rebuild time, SSE latency, API latency.

Run against the local stack (``kflow dev up``)::

    .venv/bin/python bench/readside_bench.py                 # 1,000,000 events
    .venv/bin/python bench/readside_bench.py --events 200000 # quicker

Everything it makes (topics with a ``bench-`` prefix, a ``bench_`` schema, Redis
keys, the API and projector subprocesses) is removed at the end. It prints the
figures; targets: projection >= 20,000 events/s, SSE p99 < 50 ms at 100 events/s.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import httpx
import psycopg
from confluent_kafka import KafkaError, Message
from psycopg import sql

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from kflow.api.apikeys import Scope, create_key  # noqa: E402
from kflow.bus.admin import create_topics, delete_topics  # noqa: E402
from kflow.bus.clients import make_producer  # noqa: E402
from kflow.bus.topics import topic_names, topic_specs  # noqa: E402
from kflow.core.definition import NodeSpec, WorkflowDefinition  # noqa: E402
from kflow.projections.db import connect  # noqa: E402
from kflow.projections.log_event import LogEvent  # noqa: E402
from kflow.projections.migrate import migrate  # noqa: E402
from kflow.projections.postgres import PostgresProjector  # noqa: E402
from kflow.projections.rebuild import rebuild  # noqa: E402
from kflow.settings import get_settings  # noqa: E402
from tests.readside.workload import WorkflowLog, encode, interleave, run_workflow  # noqa: E402

PARTITIONS = 4


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * p))]


def produce_all(bootstrap: str, topic: str, records: list[tuple[str, bytes]]) -> float:
    producer = make_producer(
        bootstrap,
        overrides={
            "linger.ms": 20,
            "batch.size": 1_000_000,
            "compression.type": "lz4",
            "queue.buffering.max.messages": 2_000_000,
        },
    )
    started = time.perf_counter()
    for key, value in records:
        while True:
            try:
                producer.produce(topic, key=key, value=value)
                break
            except BufferError:
                producer.poll(0.1)
        producer.poll(0)
    if producer.flush(120):
        raise RuntimeError("produce did not finish")
    return time.perf_counter() - started


def generate(prefix: str, events: int) -> tuple[list[WorkflowLog], list[tuple[str, bytes]]]:
    count = max(1, events // 8)
    t0 = 1_800_000_000_000
    started = time.perf_counter()
    # drive the core once per workflow: same bytes as the orchestrator would write
    logs = [
        run_workflow(f"{prefix}-{i:07d}", t0 + i, outcome="failed" if i % 7 == 3 else "completed")
        for i in range(count)
    ]
    # interleave in windows of 500 concurrent workflows, like a busy log
    records: list[tuple[str, bytes]] = []
    for i in range(0, len(logs), 500):
        records.extend(interleave(logs[i : i + 500]))
    print(f"generated {len(records):,} events of {count:,} workflows with the core in "
          f"{time.perf_counter() - started:.1f}s")  # fmt: skip
    return logs, records


def stored_total(dsn: str, schema: str, topic: str) -> int:
    with connect(dsn, schema) as conn:
        row = conn.execute(
            "SELECT coalesce(sum(next_offset), 0) FROM projection_offsets WHERE topic = %s",
            (topic,),
        ).fetchone()
    return int(str(row[0])) if row else 0


def bench_projection(
    env: dict[str, str], dsn: str, schema: str, prefix: str, total: int, processes: int
) -> list[subprocess.Popen[bytes]]:
    """Live projector processes from offset 0; returns them still running (caught up)."""
    procs = [
        spawn(
            [sys.executable, "-m", "kflow.projections", "postgres"],
            {**env, "KFLOW_PROJECTOR_INSTANCE": f"bench-pg-{i}"},
        )
        for i in range(processes)
    ]
    topic = topic_names(prefix).events
    started = time.perf_counter()
    first_at = None
    while (done := stored_total(dsn, schema, topic)) < total:
        if done and first_at is None:
            first_at = (time.perf_counter(), done)
        time.sleep(0.2)
    end = time.perf_counter()
    rate = total / (end - started)
    print(f"projection, {processes} process(es) (consume + decode + fold + COPY): {total:,} "
          f"events in {end - started:.1f}s incl. start-up = {rate:,.0f} events/s")  # fmt: skip
    if first_at is not None:
        t, n = first_at
        print(f"  steady state after the first batch: {(total - n) / (end - t):,.0f} events/s")
    # CPU time is steadier than wall time on a shared machine
    cpu = sum(process_cpu_s(p.pid) for p in procs)
    print(f"  projector processes' CPU (user + sys): {cpu:.1f}s = "
          f"{cpu / total * 1e6:.0f} us/event")  # fmt: skip
    return procs


def process_cpu_s(pid: int) -> float:
    """User + system CPU seconds of a live process (all its threads), from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wait_lag_zero(bootstrap: str, prefix: str, groups: int) -> None:
    from kflow.observability.lag import consumer_lag

    deadline = time.monotonic() + 1800
    while time.monotonic() < deadline:
        rows = [r for r in consumer_lag(bootstrap, prefix) if r.topic.endswith(".events")]
        if len({r.group for r in rows}) >= groups and sum(r.lag for r in rows) == 0:
            return
        time.sleep(0.5)
    raise RuntimeError("projectors did not catch up")


def bench_apply_only(dsn: str, logs: list[WorkflowLog]) -> None:
    """The database side alone: no Kafka, no decoding."""
    schema = f"bench_apply_{uuid.uuid4().hex[:6]}"
    with connect(dsn, schema) as conn:
        migrate(conn, schema)
        conn.commit()
    sink = PostgresProjector(dsn, schema)
    events = [
        LogEvent("b.events", 0, n, e, "id", "default", None, 0)
        for n, e in enumerate(e for w in logs[:25_000] for e in w.events)
    ]
    started = time.perf_counter()
    for i in range(0, len(events), 5_000):
        sink.apply(events[i : i + 5_000])
    elapsed = time.perf_counter() - started
    sink.close()
    print(f"apply only (fold + COPY + merge, no Kafka): {len(events):,} events in {elapsed:.1f}s"
          f" = {len(events) / elapsed:,.0f} events/s")  # fmt: skip
    drop_schema(dsn, schema)


def drop_schema(dsn: str, schema: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


def spawn(args: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        args, cwd=ROOT, env={**os.environ, **env},
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip


def long_workflow(workflow_id: str, steps: int) -> WorkflowLog:
    nodes = [NodeSpec(id="n0", type="echo")]
    nodes += [NodeSpec(id=f"n{i}", type="echo", depends_on=(f"n{i - 1}",)) for i in range(1, steps)]
    defn = WorkflowDefinition(name="bench-long", version=1, nodes=tuple(nodes))
    return run_workflow(workflow_id, 1_900_000_000_000, definition=defn)


def bench_sse(bootstrap: str, prefix: str, api_url: str, token: str, rate: float) -> None:
    wlog = long_workflow("sse-bench", 400)
    topic = topic_names(prefix).events
    producer = make_producer(bootstrap, overrides={"linger.ms": 0})
    acked: dict[int, float] = {}

    def acker(seq: int) -> Callable[[KafkaError | None, Message], None]:
        def on_delivery(err: KafkaError | None, _msg: Message) -> None:
            if err is None:
                acked[seq] = time.perf_counter()

        return on_delivery

    # the first event makes the workflow visible to the API before the client connects
    first = wlog.events[0]
    producer.produce(topic, key=wlog.workflow_id, value=encode(wlog, first))
    producer.flush(10)
    headers = {"Authorization": f"Bearer {token}"}
    deadline = time.monotonic() + 60
    while httpx.get(f"{api_url}/workflows/sse-bench", headers=headers).status_code != 200:
        if time.monotonic() > deadline:
            raise RuntimeError("the workflow never became visible to the API")
        time.sleep(0.1)
    received: dict[int, float] = {}
    ready = threading.Event()

    def listen() -> None:
        with httpx.stream("GET", f"{api_url}/workflows/sse-bench/stream", headers=headers,
                          timeout=120) as r:  # fmt: skip
            ready.set()
            for line in r.iter_lines():
                if line.startswith("id: "):
                    received[int(line[4:])] = time.perf_counter()

    listener = threading.Thread(target=listen, daemon=True)
    listener.start()
    ready.wait(30)
    time.sleep(1.0)
    gap = 1.0 / rate
    next_at = time.perf_counter()
    for e in wlog.events[1:]:
        next_at += gap
        while time.perf_counter() < next_at:
            producer.poll(max(0.0, next_at - time.perf_counter()))
        producer.produce(
            topic, key=wlog.workflow_id, value=encode(wlog, e),
            on_delivery=acker(e.seq),
        )  # fmt: skip
        producer.poll(0)
    producer.flush(30)
    listener.join(60)
    lat = [(received[s] - acked[s]) * 1000 for s in acked if s in received]
    missing = len(acked) - len(lat)
    print(f"SSE delivery, broker ack -> client, {rate:.0f} events/s, {len(lat)} events "
          f"({missing} missing): p50 {pct(lat, 0.5):.1f} ms, p99 {pct(lat, 0.99):.1f} ms, "
          f"max {max(lat):.1f} ms")  # fmt: skip


async def _api_load(api_url: str, token: str, ids: list[str], requests: int, conc: int) -> None:
    lat: list[float] = []
    statuses: dict[int, int] = {}
    async with httpx.AsyncClient(
        base_url=api_url, headers={"Authorization": f"Bearer {token}"}, timeout=30
    ) as client:
        queue = [random.choice(ids) for _ in range(requests)]

        async def worker() -> None:
            while queue:
                wf = queue.pop()
                t = time.perf_counter()
                r = await client.get(f"/workflows/{wf}")
                lat.append((time.perf_counter() - t) * 1000)
                statuses[r.status_code] = statuses.get(r.status_code, 0) + 1

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(conc)))
        elapsed = time.perf_counter() - started
    print(f"API GET /workflows/{{id}}: {requests} requests, {conc} concurrent, "
          f"{requests / elapsed:,.0f} req/s, p50 {statistics.median(lat):.1f} ms, "
          f"p99 {pct(lat, 0.99):.1f} ms, statuses {statuses}")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--sse-rate", type=float, default=100.0)
    parser.add_argument("--api-requests", type=int, default=3000)
    parser.add_argument("--processes", type=int, default=2, help="live projector processes")
    parser.add_argument(
        "--no-latency", action="store_true", help="stop after the rebuild (skip SSE and API)"
    )
    args = parser.parse_args()
    settings = get_settings()
    tag = uuid.uuid4().hex[:8]
    prefix, schema, redis_prefix = f"bench-{tag}", f"bench_{tag}", f"bench:{tag}:"
    specs = topic_specs(prefix, PARTITIONS, ())
    create_topics(settings.kafka_bootstrap, specs)
    procs: list[subprocess.Popen[bytes]] = []
    try:
        with connect(settings.database_url, schema) as conn:
            migrate(conn, schema)
            conn.commit()
            token = create_key(conn, "bench", "default", [Scope.READ]).token
        logs, records = generate("wf", args.events)
        secs = produce_all(settings.kafka_bootstrap, topic_names(prefix).events, records)
        print(f"produced {len(records):,} events in {secs:.1f}s")
        bench_apply_only(settings.database_url, logs)
        env = {
            "KFLOW_TOPIC_PREFIX": prefix, "KFLOW_DB_SCHEMA": schema,
            "KFLOW_REDIS_PREFIX": redis_prefix, "KFLOW_API_PORT": "18088",
        }  # fmt: skip
        procs += bench_projection(
            env, settings.database_url, schema, prefix, len(records), args.processes
        )
        for p in procs:  # the rebuild is measured alone
            p.terminate()
            p.wait(30)
        procs.clear()
        report = rebuild(
            settings.database_url,
            schema,
            settings.kafka_bootstrap,
            topic_names(prefix),
            processes=args.processes,
        )
        print(f"rebuild from offset 0 + swap, {args.processes} process(es): {report.events:,} "
              f"events in {report.seconds:.1f}s = {report.rate:,.0f} events/s")  # fmt: skip
        if args.no_latency:
            return
        kflow = str(Path(sys.executable).with_name("kflow"))
        procs.append(spawn([kflow, "run", "api"], env))
        small = {**env, "KFLOW_PROJECTOR_BATCH": "500"}
        procs.append(spawn([sys.executable, "-m", "kflow.projections", "redis"], small))
        procs.append(spawn([sys.executable, "-m", "kflow.projections", "postgres"], small))
        # the Redis projector starts from offset 0: measure latency only once it has caught up
        wait_lag_zero(settings.kafka_bootstrap, prefix, 2)
        api_url = "http://127.0.0.1:18088"
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(api_url + "/healthz").status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("the API did not start")
            time.sleep(0.2)
        bench_sse(settings.kafka_bootstrap, prefix, api_url, token, args.sse_rate)
        ids = [w.workflow_id for w in logs]
        asyncio.run(_api_load(api_url, token, ids, args.api_requests, 16))
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(20)
            except subprocess.TimeoutExpired:
                p.kill()
        delete_topics(settings.kafka_bootstrap, [s.name for s in specs])
        drop_schema(settings.database_url, schema)
        import redis

        client = redis.Redis.from_url(settings.redis_url)
        keys = list(client.scan_iter(match=f"{redis_prefix}*", count=1000))
        for i in range(0, len(keys), 1000):
            client.delete(*keys[i : i + 1000])
        client.close()


if __name__ == "__main__":
    main()
