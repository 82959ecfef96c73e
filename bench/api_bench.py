"""API latency benchmark: ``GET /workflows/{id}`` under concurrent clients, no Kafka needed.

    .venv/bin/python bench/api_bench.py                        # kflow run api, defaults
    .venv/bin/python bench/api_bench.py --auth-cache 0         # every request asks PostgreSQL
    .venv/bin/python bench/api_bench.py --route /healthz       # the HTTP stack alone

It folds ``--workflows`` executions into a fresh ``bench_api_`` schema (the projector's
own ``apply``, no Kafka), starts the API in a subprocess on a free port (the same uvicorn
settings as ``kflow run api``), runs ``--rounds`` rounds of ``--requests`` requests from
``--concurrency`` clients in a separate client process and prints p50/p99/max and req/s
per round (round 1 starts on a freshly started API). Drops the schema at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from kflow.api.apikeys import Scope, create_key  # noqa: E402
from kflow.projections.db import connect  # noqa: E402
from kflow.projections.log_event import LogEvent  # noqa: E402
from kflow.projections.migrate import migrate  # noqa: E402
from kflow.projections.postgres import PostgresProjector  # noqa: E402
from kflow.settings import get_settings  # noqa: E402
from tests.readside.workload import make_logs  # noqa: E402

SERVE = """
import json, sys, uvicorn
from kflow.api.app import create_app
from kflow.api.resources import ApiConfig
config = ApiConfig(**json.loads(sys.argv[1]))
uvicorn.run(create_app(config), host="127.0.0.1", port=int(sys.argv[2]), log_level="warning",
            access_log=False)
"""


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * p))]


def seed(dsn: str, schema: str, workflows: int) -> tuple[str, list[str]]:
    with connect(dsn, schema) as conn:
        migrate(conn, schema)
        conn.commit()
        token = create_key(conn, "bench", "default", [Scope.READ]).token
    logs = make_logs("wf", workflows)
    events = [
        LogEvent("b.events", 0, n, e, f"id-{n}", "default", None, 0)
        for n, e in enumerate(e for w in logs for e in w.events)
    ]
    sink = PostgresProjector(dsn, schema)
    for i in range(0, len(events), 5_000):
        sink.apply(events[i : i + 5_000])
    sink.close()
    return token, [w.workflow_id for w in logs]


async def load(
    url: str, token: str, paths: list[str], requests: int, conc: int
) -> tuple[list[float], float, dict[int, int]]:
    lat: list[float] = []
    statuses: dict[int, int] = {}
    queue = [random.choice(paths) for _ in range(requests)]
    limits = httpx.Limits(max_connections=conc, max_keepalive_connections=conc)
    async with httpx.AsyncClient(
        base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=30, limits=limits
    ) as client:

        async def worker() -> None:
            while queue:
                path = queue.pop()
                t = time.perf_counter()
                r = await client.get(path)
                lat.append((time.perf_counter() - t) * 1000)
                statuses[r.status_code] = statuses.get(r.status_code, 0) + 1

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(conc)))
        elapsed = time.perf_counter() - started
    return lat, requests / elapsed, statuses


async def load_raw(
    url: str, token: str, paths: list[str], requests: int, conc: int
) -> tuple[list[float], float, dict[int, int]]:
    """The same load from a minimal keep-alive HTTP/1.1 client (little client CPU per request)."""
    host, _, port = url.removeprefix("http://").partition(":")
    lat: list[float] = []
    statuses: dict[int, int] = {}
    queue = [random.choice(paths) for _ in range(requests)]

    async def worker() -> None:
        reader, writer = await asyncio.open_connection(host, int(port))
        while queue:
            path = queue.pop()
            t = time.perf_counter()
            request = (
                f"GET {path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {token}\r\n\r\n"
            )
            writer.write(request.encode())
            head = await reader.readuntil(b"\r\n\r\n")
            length = int(head.lower().split(b"content-length: ", 1)[1].split(b"\r\n", 1)[0])
            await reader.readexactly(length)
            lat.append((time.perf_counter() - t) * 1000)
            status = int(head[9:12])
            statuses[status] = statuses.get(status, 0) + 1
        writer.close()

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(conc)))
    return lat, requests / (time.perf_counter() - started), statuses


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of process ``pid`` so far (all its threads)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def client_main(args: argparse.Namespace) -> None:
    """The load generator (run as its own process so it does not share the API's loop)."""
    spec = json.loads(sys.stdin.read())
    for n in range(spec["rounds"]):
        cpu_before = cpu_seconds(spec["pid"])
        run = load_raw if spec["raw"] else load
        lat, rate, statuses = asyncio.run(
            run(spec["url"], spec["token"], spec["paths"], spec["requests"], spec["conc"])
        )
        used = cpu_seconds(spec["pid"]) - cpu_before
        with open("/proc/loadavg") as f:
            loadavg = " ".join(f.read().split()[:3])
        print(
            f"round {n + 1}: {spec['requests']} x GET {spec['label']}, {spec['conc']} concurrent: "
            f"{rate:,.0f} req/s, p50 {pct(lat, 0.5):.1f} ms, p99 {pct(lat, 0.99):.1f} ms, "
            f"max {max(lat):.1f} ms, API CPU {used * 1000 / spec['requests']:.2f} ms/request, "
            f"statuses {statuses}, loadavg {loadavg}",
            flush=True,
        )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workflows", type=int, default=1000)
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--route", default="/workflows/{id}", help="or /healthz, /workflows")
    parser.add_argument(
        "--raw-client", action="store_true", help="a minimal HTTP client instead of httpx"
    )
    parser.add_argument("--auth-cache", type=float, help="ApiConfig.auth_cache_s")
    parser.add_argument("--config", default="{}", help="other ApiConfig fields as JSON")
    parser.add_argument(
        "--api-root", type=Path, default=ROOT, help="serve the API from this tree (before/after)"
    )
    parser.add_argument("--client", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.client:
        client_main(args)
        return
    settings = get_settings()
    schema = f"bench_api_{uuid.uuid4().hex[:8]}"
    token, ids = seed(settings.database_url, schema, args.workflows)
    config = {
        "database_url": settings.database_url,
        "db_schema": schema,
        "redis_url": settings.redis_url,
        "redis_prefix": f"bench:{schema}:",
        "kafka_bootstrap": settings.kafka_bootstrap,
        "topic_prefix": f"bench-{schema}",
        **json.loads(args.config),
    }
    if args.auth_cache is not None:
        config["auth_cache_s"] = args.auth_cache
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    api = subprocess.Popen(
        [sys.executable, "-c", SERVE, json.dumps(config), str(port)],
        cwd=args.api_root,
        env={**os.environ, "PYTHONPATH": str(args.api_root)},
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(url + "/healthz").status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("the API did not start")
            time.sleep(0.1)
        route = args.route
        paths = [route.replace("{id}", i) for i in ids] if "{id}" in route else [route]
        spec = {
            "url": url, "token": token, "paths": paths, "requests": args.requests,
            "conc": args.concurrency, "rounds": args.rounds, "label": args.route,
            "raw": args.raw_client, "pid": api.pid,
        }  # fmt: skip
        print(f"API {json.dumps({k: v for k, v in config.items() if 'url' not in k})}")
        subprocess.run(
            [sys.executable, __file__, "--client"], input=json.dumps(spec).encode(), cwd=ROOT,
            check=True,
        )  # fmt: skip
    finally:
        api.terminate()
        api.wait(20)
        import psycopg
        from psycopg import sql

        with psycopg.connect(settings.database_url, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


if __name__ == "__main__":
    main()
