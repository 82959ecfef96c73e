"""Verified API keys cached in the API process, dropped the moment a key is revoked.

A trigger on ``api_keys`` (migration 0004) sends ``NOTIFY kflow_api_key_revoked,
'<key id>'`` whenever a key row changes; a task here LISTENs and evicts that key.
The cache is trusted only while the listener is connected (a notification missed
during a reconnect cannot leave a revoked key cached), and a lookup that raced with
a revocation is not stored (``generation``). Open streams hold a :class:`KeyWatch` on
their key: an eviction (or a reconnect of the listener, which may have missed one)
marks it, and the stream re-verifies its key before it sends anything more (ADR 0047).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import select
from dataclasses import dataclass, field

import psycopg
from psycopg import sql

from kflow.api.apikeys import REVOKED_CHANNEL, Principal

log = logging.getLogger(__name__)
MAX_ENTRIES = 10_000
RECONNECT_S = 1.0


@dataclass(eq=False)
class KeyWatch:
    """An open stream's hold on its key: ``changed`` is set when the key's row may have
    changed (revoked, deleted, rescoped), so the stream must verify the key again."""

    key_id: str
    changed: asyncio.Event = field(default_factory=asyncio.Event)


@dataclass
class KeyCache:
    """Principals by the sha256 of their token, each with the monotonic time it expires."""

    ttl_s: float
    entries: dict[bytes, tuple[Principal, float]] = field(default_factory=dict)
    generation: int = 0
    """Bumped on every eviction: a lookup that started before one must not be cached."""
    listener: psycopg.AsyncConnection[tuple[object, ...]] | None = None
    """The connection LISTENing for revocations; None while it is (re)connecting."""
    watches: dict[str, set[KeyWatch]] = field(default_factory=dict)
    """Open streams by the id of the key they were opened with."""

    def get(self, digest: bytes, now: float) -> Principal | None:
        """The cached principal, unless expired or a revocation may be on its way."""
        hit = self.entries.get(digest)
        if hit is None or hit[1] <= now or not self._quiet():
            return None
        return hit[0]

    def put(self, digest: bytes, principal: Principal, now: float, generation: int) -> None:
        """Cache a principal looked up when ``generation`` was current."""
        if self.ttl_s <= 0 or generation != self.generation or self.listener is None:
            return
        if len(self.entries) >= MAX_ENTRIES:
            self.entries.clear()
        self.entries[digest] = (principal, now + self.ttl_s)

    def evict_key(self, key_id: str) -> None:
        """Forget every token of ``key_id`` and tell its open streams."""
        self.generation += 1
        for digest in [d for d, (p, _) in self.entries.items() if p.key_id == key_id]:
            del self.entries[digest]
        for watch in self.watches.get(key_id, ()):
            watch.changed.set()

    def clear(self) -> None:
        """Forget every key; every open stream re-verifies its own."""
        self.generation += 1
        self.entries.clear()
        for watches in self.watches.values():
            for watch in watches:
                watch.changed.set()

    def watch(self, key_id: str) -> KeyWatch:
        """Register an open stream of ``key_id`` (release it with :meth:`unwatch`)."""
        watch = KeyWatch(key_id)
        self.watches.setdefault(key_id, set()).add(watch)
        return watch

    def unwatch(self, watch: KeyWatch) -> None:
        watches = self.watches.get(watch.key_id)
        if watches is not None:
            watches.discard(watch)
            if not watches:
                del self.watches[watch.key_id]

    def _quiet(self) -> bool:
        """True when the listener is connected and has no unread notification waiting."""
        conn = self.listener
        if conn is None or conn.closed:
            return False
        try:
            return not has_unread_input(conn)
        except (OSError, ValueError, psycopg.Error):
            return False


def has_unread_input(conn: psycopg.AsyncConnection[tuple[object, ...]]) -> bool:
    """Whether the server wrote something an idle connection has not read yet
    (a notification, or the close of a restarting server); no round trip."""
    readable, _, _ = select.select([conn.fileno()], [], [], 0)
    return bool(readable)


async def listen_for_revocations(cache: KeyCache, database_url: str) -> None:
    """Evict revoked keys from ``cache`` until cancelled; reconnects after a failure."""
    while True:
        try:
            conn = await psycopg.AsyncConnection.connect(
                database_url, autocommit=True, connect_timeout=5
            )
            async with conn:
                await conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(REVOKED_CHANNEL)))
                cache.clear()  # anything cached before LISTEN may have missed a revocation
                cache.listener = conn
                try:
                    async for note in conn.notifies():
                        cache.evict_key(note.payload)
                finally:
                    cache.listener = None
                    cache.clear()
        except psycopg.Error as e:
            log.warning("API key revocation listener: %s; reconnecting", e)
        await asyncio.sleep(RECONNECT_S)


async def stop_listener(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
