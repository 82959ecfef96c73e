"""The connections the API holds for its lifetime: PostgreSQL pool, Redis, command producer."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import psycopg
import redis.asyncio as aioredis
from psycopg_pool import AsyncConnectionPool, PoolTimeout
from redis.exceptions import RedisError

from kflow.api.apikeys import Principal
from kflow.api.keycache import (
    KeyCache,
    has_unread_input,
    listen_for_revocations,
    stop_listener,
)
from kflow.api.problems import unavailable
from kflow.bus.admin import broker_reachable
from kflow.bus.commands import DELIVERY_TIMEOUT_S, CommandPublisher
from kflow.projections.db import search_path_option

PG_TIMEOUT_S = 3.0


@dataclass(frozen=True)
class ApiConfig:
    """Where the API finds its dependencies."""

    database_url: str
    db_schema: str
    redis_url: str
    redis_prefix: str
    kafka_bootstrap: str
    topic_prefix: str
    max_payload_bytes: int = 1_000_000
    sse_keepalive_s: float = 15.0
    auth_cache_s: float = 5.0
    """How long a verified key is trusted without asking PostgreSQL; 0 turns the cache off.
    Any change to a key row evicts it at once (trigger + LISTEN/NOTIFY, see ``keycache``),
    and the cache is bypassed while the listener is down: this bounds nothing else."""
    command_timeout_s: float = DELIVERY_TIMEOUT_S
    """How long a command request waits for Kafka's ack before answering 503."""

    @property
    def max_body_bytes(self) -> int:
        """Largest request body read (413 beyond): room for a document at the payload limit
        sent pretty-printed, plus the rest of the body."""
        return 2 * self.max_payload_bytes + 65_536


@dataclass
class ApiResources:
    """Live handles, created at startup and closed at shutdown."""

    config: ApiConfig
    pool: AsyncConnectionPool[psycopg.AsyncConnection[tuple[object, ...]]]
    redis: aioredis.Redis
    commands: CommandPublisher
    keys: KeyCache
    listener: asyncio.Task[None]
    announced: set[str] = field(default_factory=set)
    """Key ids whose signing key this process has published to ``<prefix>.principals``."""

    @asynccontextmanager
    async def db(self) -> AsyncIterator[psycopg.AsyncConnection[tuple[object, ...]]]:
        """A pooled connection; an unreachable database becomes a 503 problem."""
        try:
            async with self.pool.connection(timeout=PG_TIMEOUT_S) as conn:
                yield conn
        except (PoolTimeout, psycopg.OperationalError) as e:
            raise unavailable("PostgreSQL", e) from e

    async def check_ready(self) -> dict[str, str]:
        """Status of each dependency: ``ok`` or the reason it is not."""
        status: dict[str, str] = {}
        try:
            async with self.pool.connection(timeout=PG_TIMEOUT_S) as conn:
                await conn.execute("SELECT 1")
            status["postgresql"] = "ok"
        except (PoolTimeout, psycopg.Error) as e:
            status["postgresql"] = f"unavailable: {type(e).__name__}"
        try:
            await asyncio.wait_for(self.redis.ping(), PG_TIMEOUT_S)
            status["redis"] = "ok"
        except (RedisError, OSError, TimeoutError) as e:
            status["redis"] = f"unavailable: {type(e).__name__}"
        ok = await asyncio.to_thread(broker_reachable, self.config.kafka_bootstrap, 2.0)
        status["kafka"] = "ok" if ok else "unavailable: no broker answered"
        return status


async def check_if_unsettled(conn: psycopg.AsyncConnection[tuple[object, ...]]) -> None:
    """Pool check at checkout: a round trip only when the idle socket has something to say.

    An idle connection's socket is readable only when the server wrote to it (typically
    it closed it: a restart). A query at every checkout cost a round trip and ~0.1-0.17 ms
    of API CPU per request for nothing while PostgreSQL is up (ADR 0045).
    """
    if conn.closed or conn.broken:
        raise psycopg.OperationalError("the connection is closed")
    if has_unread_input(conn):
        await AsyncConnectionPool.check_connection(conn)


async def open_resources(config: ApiConfig) -> ApiResources:
    """Connect lazily: the API starts even when a dependency is down (it answers 503)."""
    pool: AsyncConnectionPool[psycopg.AsyncConnection[tuple[object, ...]]] = AsyncConnectionPool(
        config.database_url,
        min_size=1,
        max_size=16,
        kwargs={"options": search_path_option(config.db_schema), "autocommit": True},
        check=check_if_unsettled,
        open=False,
        # give up a slot after 5 s so the next request starts a fresh attempt instead of
        # waiting out a long exponential backoff once PostgreSQL is back
        reconnect_timeout=5,
    )
    await pool.open(wait=False)
    redis = aioredis.Redis.from_url(
        config.redis_url, socket_connect_timeout=2, socket_timeout=5, health_check_interval=10
    )
    commands = CommandPublisher(
        config.kafka_bootstrap,
        config.topic_prefix,
        timeout_s=config.command_timeout_s,
        component="api",
    )
    keys = KeyCache(config.auth_cache_s)
    listener = asyncio.create_task(
        listen_for_revocations(keys, config.database_url), name="api-key-revocations"
    )
    return ApiResources(config, pool, redis, commands, keys, listener)


async def announce(res: ApiResources, who: Principal) -> None:
    """Publish ``who``'s signing key before its first command from this process.

    Keys made by ``kflow apikey create`` are published already; this covers keys made
    before ADR 0060 or straight in PostgreSQL. Revocation stays final: it is a separate
    record that no key record undoes (``kflow.bus.principals``).
    """
    record = who.signing_record()
    if record is None or who.key_id in res.announced:
        return
    await res.commands.publish_principal_async(record)
    res.announced.add(who.key_id)


async def close_resources(res: ApiResources) -> None:
    """Flush pending commands and close every connection."""
    await stop_listener(res.listener)
    await asyncio.to_thread(res.commands.close)
    await res.redis.aclose()
    await res.pool.close()
