"""PostgreSQL, then Redis, stopped for several seconds while events keep coming: the API answers 503
where it needs the missing server, the projectors wait, catch up and lose nothing.

Uses a dedicated PostgreSQL cluster and Redis server on their own ports: stopping
the shared ones would break other tests running at the same time.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

import httpx
import pytest
import redis

from kflow.observability.health import HEALTH
from kflow.projections.db import connect
from kflow.projections.migrate import migrate
from kflow.projections.redis_keys import status_key
from kflow.settings import Settings
from tests.readside.conftest import ApiServer, ReadSide, RunningProjector, free_port, wait_until
from tests.readside.dedicated import DedicatedPostgres, DedicatedRedis
from tests.readside.expected import actual_executions, event_keys, expected_executions, logged_keys
from tests.readside.workload import make_logs

pytestmark = [pytest.mark.integration, pytest.mark.slow]
OUTAGE_S = 8.0
"""Past the projectors' backoff ramp (0.2 s doubling to its 5 s ceiling: 6.2 s), so they retry
at the ceiling while the server is down, and the API's pool sees connections die mid-outage."""


@pytest.fixture
def dedicated(
    isolated_settings: Settings,
) -> Iterator[tuple[ReadSide, DedicatedPostgres, DedicatedRedis]]:
    pg = DedicatedPostgres(free_port())
    rd = DedicatedRedis(free_port())
    try:
        schema = "outage"
        with connect(pg.dsn, schema) as conn:
            migrate(conn, schema)
            conn.commit()
        settings = isolated_settings.model_copy(
            update={
                "database_url": pg.dsn,
                "redis_url": rd.url,
                "db_schema": schema,
                "redis_prefix": f"o{uuid.uuid4().hex[:6]}:",
            }
        )
        yield ReadSide(settings), pg, rd
    finally:
        rd.destroy()
        pg.destroy()


def _problem(r: httpx.Response, dependency: str) -> None:
    assert r.status_code == 503, (r.status_code, r.text)
    assert r.headers["content-type"] == "application/problem+json"
    assert r.json()["dependency"] == dependency and "Retry-After" in r.headers


def test_outages_give_503_and_projectors_catch_up_losing_nothing(
    dedicated: tuple[ReadSide, DedicatedPostgres, DedicatedRedis],
) -> None:
    from kflow.api.apikeys import Scope, create_key

    readside, pg, rd = dedicated
    with readside.connect() as conn:
        token = create_key(conn, "t", "default", [Scope.WRITE]).token
    auth = {"Authorization": f"Bearer {token}"}
    api = ApiServer(readside)
    projectors = [RunningProjector(readside, "postgres"), RunningProjector(readside, "redis")]
    try:
        batch1, batch2, batch3 = make_logs("o1", 30), make_logs("o2", 30), make_logs("o3", 30)
        n1 = readside.produce(batch1)
        for p in projectors:
            p.wait_applied(n1)
        assert httpx.get(api.url + "/workflows", headers=auth).status_code == 200

        # --- PostgreSQL down ------------------------------------------------------------
        down_at = time.monotonic()
        pg.stop()
        n2 = readside.produce(batch2)
        _problem(httpx.get(api.url + "/workflows", headers=auth, timeout=30), "PostgreSQL")
        _problem(
            httpx.post(api.url + "/workflows/o1-000001/cancel", headers=auth, timeout=30),
            "PostgreSQL",
        )
        ready = httpx.get(api.url + "/readyz", timeout=30)
        assert ready.status_code == 503
        assert ready.json()["checks"]["postgresql"].startswith("unavailable")
        assert ready.json()["checks"]["redis"] == "ok"
        projectors[1].wait_applied(n1 + n2)  # Redis is unaffected
        # the waiting projector is not ready, and says why (ADR 0033)
        wait_until(lambda: HEALTH.status()["checks"].get("postgresql", "ok") != "ok", "not ready")
        time.sleep(max(0.0, OUTAGE_S - (time.monotonic() - down_at)))
        pg.start()
        projectors[0].wait_applied(n1 + n2)
        assert HEALTH.status()["checks"]["postgresql"] == "ok"
        wait_until(  # a client retries after Retry-After; the pool reconnects meanwhile
            lambda: httpx.get(api.url + "/workflows/o2-000001", headers=auth).status_code == 200,
            "the API to serve again",
        )

        # --- Redis down -----------------------------------------------------------------
        down_at = time.monotonic()
        rd.stop()
        n3 = readside.produce(batch3)
        _problem(
            httpx.get(api.url + "/workflows/o1-000001/stream", headers=auth, timeout=30), "Redis"
        )
        assert httpx.get(api.url + "/workflows", headers=auth).status_code == 200
        projectors[0].wait_applied(n1 + n2 + n3)  # PostgreSQL is unaffected
        wait_until(lambda: HEALTH.status()["checks"].get("redis", "ok") != "ok", "not ready")
        time.sleep(max(0.0, OUTAGE_S - (time.monotonic() - down_at)))
        rd.start()  # an empty Redis: the projector re-applies from its committed offsets
        projectors[1].wait_applied(n1 + n2 + n3)
        assert HEALTH.status()["checks"]["redis"] == "ok"
        wait_until(lambda: httpx.get(api.url + "/readyz", timeout=30).status_code == 200, "ready")

        everything = batch1 + batch2 + batch3
        with readside.connect() as conn:
            assert event_keys(conn) == logged_keys(everything)
            assert actual_executions(conn) == expected_executions(everything)
        client = redis.Redis.from_url(readside.settings.redis_url)
        try:
            for w in batch3:
                key = status_key(readside.settings.redis_prefix, w.workflow_id)
                assert client.hget(key, "last_seq") == str(w.events[-1].seq).encode()
        finally:
            client.close()
    finally:
        for p in projectors:
            p.close()
        api.close()
