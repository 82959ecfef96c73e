"""The Redis projection: hot status per workflow, newer-seq-only updates, TTL when finished."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator

import pytest
import redis

from kflow.core.replay import replay
from kflow.projections.log_event import LogEvent
from kflow.projections.redis_keys import events_channel, status_key
from kflow.projections.redis_projection import RedisProjector
from tests.kafka_helpers import produce
from tests.readside.conftest import ReadSide, RunningProjector
from tests.readside.workload import encode, make_logs, run_workflow

pytestmark = pytest.mark.integration


@pytest.fixture
def client(readside: ReadSide) -> Iterator[redis.Redis]:
    c = redis.Redis.from_url(readside.settings.redis_url)
    yield c
    c.close()


def test_hashes_match_the_fold_and_finished_ones_expire(
    readside: ReadSide, start_projector: Callable[[str], RunningProjector], client: redis.Redis
) -> None:
    logs = make_logs("rd", 8)
    running = run_workflow("rd-running", 1_800_000_000_000)
    total = readside.produce(logs)
    topic = f"{readside.settings.topic_prefix}.events"
    total += produce(
        readside.settings.kafka_bootstrap,
        topic,
        [(running.workflow_id, encode(running, e)) for e in running.events[:3]],
    )
    start_projector("redis").wait_applied(total)
    prefix = readside.settings.redis_prefix
    for w in logs:
        key = status_key(prefix, w.workflow_id)
        state = replay(w.events)
        h = client.hgetall(key)
        assert h[b"status"] == state.status.encode()
        assert int(h[b"last_seq"]) == state.seq
        for step_key, rec in state.steps.items():
            assert json.loads(h[f"step:{step_key}".encode()])["status"] == rec.status
        assert 0 < client.ttl(key) <= readside.settings.finished_ttl_s
    key = status_key(prefix, "rd-running")
    assert client.hget(key, "status") == b"running"
    assert client.ttl(key) == -1  # a running workflow never expires


def test_old_or_repeated_events_neither_rewind_nor_republish(
    readside: ReadSide, client: redis.Redis
) -> None:
    wlog = run_workflow("rd-seq", 1_800_000_000_000)
    events = [
        LogEvent("t.events", 0, i, e, f"e{i}", "default", None, 0)
        for i, e in enumerate(wlog.events)
    ]
    sink = RedisProjector(
        redis.Redis.from_url(readside.settings.redis_url), readside.settings.redis_prefix
    )
    try:
        sink.apply(events)
        key = status_key(readside.settings.redis_prefix, "rd-seq")
        before = client.hgetall(key)
        pubsub = client.pubsub()  # type: ignore[no-untyped-call]
        pubsub.subscribe(events_channel(readside.settings.redis_prefix, "rd-seq"))
        first = pubsub.get_message(timeout=1)
        assert first is not None and first["type"] == "subscribe"
        sink.forget()  # as after a restart: redelivered events meet only the stored seq
        again = sink.apply(events[:3])
        assert again.applied == 0 and again.duplicates == 3
        assert client.hgetall(key) == before
        assert pubsub.get_message(timeout=0.5) is None
        pubsub.close()
    finally:
        sink.close()
