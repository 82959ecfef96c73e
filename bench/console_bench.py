"""Console benchmark: the workflow list over 100,000 runs, and a 1,000-step run in Chromium.

    .venv/bin/python bench/console_bench.py                  # defaults: 100,000 runs, 1,000 steps
    .venv/bin/python bench/console_bench.py --runs 20000 --steps 200 --port 19450

1. Loads ``--runs`` executions of one tenant straight into a fresh ``bench_console_`` schema
   (COPY; five names, every status, created over 30 days), VACUUM ANALYZE, starts the API
   (with the console) in a subprocess, signs in, and times ``GET /ui/workflows`` for several
   filters: the server time is the page's own ``Server-Timing`` header (the handler from
   request to rendered HTML), next to the round trip on loopback. Budget: p95 < 200 ms.
2. Folds one ``--steps``-step run (20 levels, each node joining two of the level before)
   through the real core into the read model (the projector's own ``apply``), opens its
   page in headless Chromium (Debian's, via Playwright) and reports navigation to the
   first frame painted after the load event, with the DAG and the timeline drawn.
   Budget: < 1 s.

Drops the schema at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from kflow.api.apikeys import Scope, create_key  # noqa: E402
from kflow.projections.db import connect  # noqa: E402
from kflow.projections.migrate import migrate  # noqa: E402
from kflow.settings import get_settings  # noqa: E402
from tests.readside.workload import project, run_workflow, wide_definition  # noqa: E402

SERVE = """
import json, sys, uvicorn
from kflow.api.app import create_app
from kflow.api.resources import ApiConfig
config = ApiConfig(**json.loads(sys.argv[1]))
uvicorn.run(create_app(config), host="127.0.0.1", port=int(sys.argv[2]), log_level="warning",
            access_log=False)
"""
TENANT = "bench"
NAMES = ("ingest", "billing", "reports", "approve", "export")
STATUSES = ("completed",) * 6 + ("failed", "running", "running", "paused", "cancelled")


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * p))]


def seed_list(dsn: str, schema: str, runs: int) -> tuple[str, str]:
    """COPY ``runs`` executions; returns (an id in the middle, a text only a few ids contain)."""
    rng = random.Random(7)
    now = datetime.now(UTC)
    with connect(dsn, schema) as conn:
        with (
            conn.cursor() as cur,
            cur.copy(
                "COPY executions (workflow_id, tenant, name, version, status, input, output,"
                " reason, actor, created_at, updated_at, finished_at, last_seq) FROM STDIN"
            ) as copy,
        ):
            for i in range(runs):
                created = now - timedelta(seconds=rng.uniform(0, 30 * 86_400))
                status = rng.choice(STATUSES)
                done = status in ("completed", "failed", "cancelled")
                finished = created + timedelta(seconds=rng.uniform(1, 600)) if done else None
                copy.write_row((
                    f"run-{i:07d}-{uuid.UUID(int=rng.getrandbits(128)).hex[:8]}", TENANT,
                    rng.choice(NAMES), 1, status, f'{{"n": {i}}}', None, "", "bench",
                    created, finished or created, finished, 5,
                ))  # fmt: skip
        conn.commit()
        conn.autocommit = True
        conn.execute("VACUUM ANALYZE executions")
    return f"run-{runs // 2:07d}", f"{runs // 3:07d}"[:5]


def seed_big_run(dsn: str, schema: str, steps: int) -> tuple[str, int]:
    wlog = run_workflow(
        "big-run",
        int(time.time() * 1000) - 60_000,
        tenant=TENANT,
        actor="bench",
        definition=wide_definition(steps),
    )
    return wlog.workflow_id, project(dsn, schema, wlog)


def pick_port(explicit: int | None) -> int:
    import socket

    low, _, high = os.environ.get("KFLOW_TEST_PORTS", "").partition("-")
    candidates = [explicit] if explicit else (range(int(low), int(high) + 1) if low else [0])
    for port in candidates:
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port or 0))
            except OSError:
                continue
            return int(s.getsockname()[1])
    raise SystemExit("no free port")


def time_list(client: httpx.Client, cases: dict[str, str], requests: int) -> None:
    print(f"GET /ui/workflows, {requests} requests per case (server = Server-Timing app;dur)")
    print(f"{'case':28} {'server p50':>11} {'p95':>8} {'max':>8} {'round trip p95':>15}")
    worst = 0.0
    for label, query in cases.items():
        server: list[float] = []
        total: list[float] = []
        for _ in range(requests):
            started = time.perf_counter()
            r = client.get(f"/ui/workflows{query}")
            total.append((time.perf_counter() - started) * 1000)
            assert r.status_code == 200, r.text[:300]
            server.append(float(r.headers["server-timing"].split("dur=")[1]))
        worst = max(worst, pct(server, 0.95))
        print(
            f"{label:28} {pct(server, 0.5):9.1f}ms {pct(server, 0.95):6.1f}ms "
            f"{max(server):6.1f}ms {pct(total, 0.95):13.1f}ms"
        )
    print(
        f"worst p95 server time: {worst:.1f} ms (budget 200 ms): {'OK' if worst < 200 else 'OVER'}"
    )


def time_browser(base: str, token: str, workflow_id: str, rounds: int) -> None:
    from playwright.sync_api import sync_playwright

    from tests.console.conftest import chromium_path

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium_path(), headless=True)
        ctx = browser.new_context(viewport={"width": 1400, "height": 900})
        page = ctx.new_page()
        page.goto(f"{base}/ui/login")
        page.fill("input[name=api_key]", token)
        page.click("button[type=submit]")
        page.wait_for_url("**/ui/workflows")
        results: list[tuple[float, float, float, float]] = []
        for _ in range(rounds):
            answer = page.goto(f"{base}/ui/workflows/{workflow_id}", wait_until="load")
            assert answer is not None and answer.ok
            server = float(answer.headers["server-timing"].split("dur=")[1])
            # a large run is drawn on canvases by console.js: wait until both are drawn
            for canvas in ("#dag-canvas", "#timeline-canvas"):
                if page.locator(canvas).count():
                    page.wait_for_selector(f"{canvas}[data-drawn]", state="attached")
            painted = page.evaluate(
                "() => new Promise(r => requestAnimationFrame(() => requestAnimationFrame("
                "() => r(performance.now()))))"
            )
            nav = page.evaluate("() => performance.getEntriesByType('navigation')[0].toJSON()")
            nodes = page.locator("#dag g.node").count() or page.evaluate(
                "() => JSON.parse(document.getElementById('dag-data').textContent).nodes.length"
            )
            bars = page.locator("#timeline rect.bar").count() or page.evaluate(
                "() => JSON.parse(document.getElementById('timeline-data').textContent).bars.length"
            )
            results.append(
                (server, float(nav["responseEnd"]), float(nav["loadEventEnd"]), float(painted))
            )
        size = len(page.content())
        browser.close()
    print(
        f"\none run with {nodes} DAG nodes and {bars} timeline bars ({size / 1e6:.2f} MB HTML), "
        f"{rounds} loads in Chromium"
    )
    print("(ms from navigation start; browser = painted - last byte received)")
    print(
        f"{'':6} {'server':>8} {'last byte':>10} {'load event':>11} {'painted':>9} {'browser':>9}"
    )
    for label, idx in (("p50", 0.5), ("p95", 0.95), ("max", 1.0)):
        cols = [pct([r[k] for r in results], idx) for k in range(4)]
        work = pct([r[3] - r[1] for r in results], idx)
        print(
            f"{label:6} {cols[0]:6.0f}ms {cols[1]:8.0f}ms {cols[2]:9.0f}ms {cols[3]:7.0f}ms"
            f" {work:7.0f}ms"
        )
    p50, p95 = (pct([r[3] for r in results], q) for q in (0.5, 0.95))
    print(
        f"navigation-to-paint p50 {p50:.0f} ms, p95 {p95:.0f} ms (budget 1000 ms): "
        f"{'OK' if p95 < 1000 else 'OVER'}"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--runs", type=int, default=100_000)
    ap.add_argument("--steps", type=int, default=1_000)
    ap.add_argument("--requests", type=int, default=60)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--port", type=int, default=None)
    args = ap.parse_args()
    s = get_settings()
    schema = f"bench_console_{uuid.uuid4().hex[:8]}"
    with connect(s.database_url, schema) as conn:
        migrate(conn, schema)
        conn.commit()
        # a writer's page: the list carries the bulk-action form and a checkbox per row
        token = create_key(conn, "bench", TENANT, [Scope.READ, Scope.WRITE]).token
    proc = None
    try:
        started = time.perf_counter()
        some_id, needle = seed_list(s.database_url, schema, args.runs)
        print(f"seeded {args.runs} runs in {time.perf_counter() - started:.1f} s")
        started = time.perf_counter()
        big, events = seed_big_run(s.database_url, schema, args.steps)
        print(
            f"seeded a {args.steps}-step run ({events} events)"
            f" in {time.perf_counter() - started:.1f} s"
        )
        port = pick_port(args.port)
        config = {
            "database_url": s.database_url, "db_schema": schema, "redis_url": s.redis_url,
            "redis_prefix": f"bench-console-{schema}:", "kafka_bootstrap": s.kafka_bootstrap,
            "topic_prefix": "bench-console",
        }  # fmt: skip
        proc = subprocess.Popen(
            [sys.executable, "-c", SERVE, json.dumps(config), str(port)], cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )  # fmt: skip
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 120  # a loaded shared machine starts it slowly
        while True:
            try:
                if httpx.get(f"{base}/healthz").status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise SystemExit("the API did not start")
            time.sleep(0.2)
        day_ago = (datetime.now(UTC) - timedelta(days=1)).strftime("%Y-%m-%dT%H:%M")
        with httpx.Client(base_url=base, timeout=30) as client:
            r = client.post("/ui/login", data={"api_key": token, "next": "/ui/workflows"})
            assert r.status_code == 303, r.text
            first = client.get("/ui/workflows")
            cursor = first.text.split("cursor=")[1].split('"')[0].replace("&amp;", "&")
            cases = {
                "newest 50": "",
                "status=running": "?status=running",
                "name=billing": "?name=billing",
                "status=failed&name=export": "?status=failed&name=export",
                "last 24 h": f"?after={day_ago}",
                "id contains (rare)": f"?q={needle}",
                "id contains (exact id)": f"?q={some_id}",
                "page 2 (keyset cursor)": f"?cursor={cursor}",
            }  # fmt: skip
            for query in cases.values():  # warm the pool and the caches
                client.get(f"/ui/workflows{query}")
            time_list(client, cases, args.requests)
        time_browser(base, token, big, args.rounds)
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(10)
        with connect(s.database_url, schema) as conn:
            conn.execute(f"DROP SCHEMA {schema} CASCADE")
            conn.commit()


if __name__ == "__main__":
    main()
