"""SSE: a client that disconnects and resumes with Last-Event-ID gets every event once, in order."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest

from tests.kafka_helpers import produce
from tests.readside.conftest import ApiServer, ReadSide, RunningProjector, wait_until
from tests.readside.sse import sse_messages
from tests.readside.workload import WorkflowLog, encode, run_workflow

pytestmark = pytest.mark.integration


def _produce(readside: ReadSide, wlog: WorkflowLog, lo: int, hi: int) -> None:
    topic = f"{readside.settings.topic_prefix}.events"
    records = [(wlog.workflow_id, encode(wlog, e)) for e in wlog.events[lo:hi]]
    produce(readside.settings.kafka_bootstrap, topic, records)


def test_stream_resumes_after_disconnect_without_gaps_or_duplicates(
    readside: ReadSide,
    api: ApiServer,
    start_projector: Callable[[str], RunningProjector],
    make_key: Callable[..., str],
) -> None:
    wlog = run_workflow("sse-1", 1_800_000_000_000, tenant="acme")
    seqs = [e.seq for e in wlog.events]
    assert seqs == list(range(1, 9))
    pg = start_projector("postgres")
    start_projector("redis")
    _produce(readside, wlog, 0, 3)
    pg.wait_applied(3)
    headers = {"Authorization": f"Bearer {make_key('acme', 'read')}"}
    got: list[tuple[int, str]] = []
    url = f"{api.url}/workflows/sse-1/stream"
    with httpx.stream("GET", url, headers=headers, timeout=30) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        stream = sse_messages(r)
        for _ in range(3):  # backfilled from PostgreSQL
            seq, kind, data = next(stream)
            assert data["seq"] == seq
            got.append((seq, kind))
        _produce(readside, wlog, 3, 5)
        for _ in range(2):  # live from Redis pub/sub
            seq, kind, _data = next(stream)
            got.append((seq, kind))
    # disconnected: these arrive while nobody listens
    _produce(readside, wlog, 5, 8)
    pg.wait_applied(8)
    headers["Last-Event-ID"] = str(got[-1][0])
    with httpx.stream("GET", url, headers=headers, timeout=30) as r:
        got += [(seq, kind) for seq, kind, _ in sse_messages(r)]  # ends after the terminal event
    assert [s for s, _ in got] == seqs
    assert [k for _, k in got] == [type(e).__name__ for e in wlog.events]


def test_stream_fills_a_gap_from_postgres_when_redis_runs_ahead(
    readside: ReadSide,
    api: ApiServer,
    start_projector: Callable[[str], RunningProjector],
    make_key: Callable[..., str],
) -> None:
    """Events 3-5 were published before the client subscribed and PostgreSQL trails:
    the live events 6-8 must wait until 3-5 can be backfilled."""
    import redis

    from kflow.projections.redis_keys import status_key

    wlog = run_workflow("sse-2", 1_800_000_000_000, tenant="acme")
    pg = start_projector("postgres")
    _produce(readside, wlog, 0, 2)
    pg.wait_applied(2)
    pg.close()  # PostgreSQL now trails at seq 2
    start_projector("redis")
    _produce(readside, wlog, 2, 5)
    client = redis.Redis.from_url(readside.settings.redis_url)
    key = status_key(readside.settings.redis_prefix, "sse-2")
    wait_until(lambda: client.hget(key, "last_seq") == b"5", "Redis to reach seq 5")
    client.close()
    headers = {"Authorization": f"Bearer {make_key('acme', 'read')}"}
    got: list[int] = []
    with httpx.stream("GET", f"{api.url}/workflows/sse-2/stream", headers=headers, timeout=60) as r:
        stream = sse_messages(r)
        got += [next(stream)[0], next(stream)[0]]
        _produce(readside, wlog, 5, 8)  # live 6, 7, 8 arrive ahead of the gap 3-5
        start_projector("postgres")
        got += [seq for seq, _, _ in stream]
    assert got == list(range(1, 9))


def test_stream_rejects_bad_last_event_id_and_unknown_workflow(
    readside: ReadSide, api: ApiServer, make_key: Callable[..., str]
) -> None:
    headers = {"Authorization": f"Bearer {make_key('acme', 'read')}"}
    r = httpx.get(f"{api.url}/workflows/nope/stream", headers=headers, timeout=10)
    assert r.status_code == 404
    headers["Last-Event-ID"] = "abc"
    r = httpx.get(f"{api.url}/workflows/nope/stream", headers=headers, timeout=10)
    assert r.status_code == 400
    assert "Last-Event-ID" in r.json()["detail"]
