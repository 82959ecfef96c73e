"""The real PostgreSQL and Redis: round trips through the isolation fixtures."""

from __future__ import annotations

import psycopg
import pytest
import redis

pytestmark = pytest.mark.integration


def test_postgres_round_trip_in_a_private_database(pg_dsn: str) -> None:
    with psycopg.connect(pg_dsn) as conn:
        conn.execute("CREATE TABLE items (id int PRIMARY KEY, doc jsonb NOT NULL)")
        conn.execute("INSERT INTO items VALUES (1, %s::jsonb)", ['{"a": [1, 2]}'])
        conn.commit()
    with psycopg.connect(pg_dsn) as conn:
        row = conn.execute("SELECT doc, current_database() FROM items WHERE id = 1").fetchone()
    assert row is not None
    assert row[0] == {"a": [1, 2]}
    assert row[1].startswith("test_test_stores_")


def test_postgres_rolled_back_rows_are_gone(pg_dsn: str) -> None:
    with psycopg.connect(pg_dsn) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS audit (n int)")
        conn.commit()
        conn.execute("INSERT INTO audit VALUES (1)")
        conn.rollback()
        count = conn.execute("SELECT count(*) FROM audit").fetchone()
    assert count == (0,)


def test_redis_round_trip_under_the_test_prefix(redis_url: str, redis_prefix: str) -> None:
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    try:
        client.hset(f"{redis_prefix}wf:1", mapping={"status": "running", "seq": "3"})
        client.expire(f"{redis_prefix}wf:1", 60)
        assert client.hgetall(f"{redis_prefix}wf:1") == {"status": "running", "seq": "3"}
        pubsub = client.pubsub()  # type: ignore[no-untyped-call]
        pubsub.subscribe(f"{redis_prefix}chan")
        pubsub.get_message(timeout=5)  # the subscribe confirmation
        client.publish(f"{redis_prefix}chan", "hello")
        message = pubsub.get_message(ignore_subscribe_messages=True, timeout=5)
        pubsub.close()
        assert message is not None and message["data"] == "hello"
    finally:
        client.close()
