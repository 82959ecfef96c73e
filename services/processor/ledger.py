"""Idempotency ledger: the recorded outcome of each step attempt, in Redis.

Keyed by the task's idempotency key (``"{step_key}#{attempt}"``). The processor
records the outcome after the node returns and before it reports the result;
a redelivered task (after a crash or rebalance) finds the record and reports
it again instead of running the node a second time. Only a process that dies
while the node runs causes a second execution, with the same key.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

import redis.asyncio as aioredis
import redis.exceptions

from kflow.core.errors import ErrorClass
from kflow.core.jsondoc import NULL, Json

DEFAULT_TTL_S = 7 * 24 * 3600
LEDGER_UNAVAILABLE: tuple[type[Exception], ...] = (redis.exceptions.RedisError, OSError)
"""Errors that mean the ledger's Redis is unreachable or refusing work (down, loading, out of
memory, read-only replica): the caller waits and tries again, never fails the step."""
SOCKET_TIMEOUT_S = 5.0
"""A Redis that stops answering (paused, partitioned) fails a call instead of hanging it."""
K = TypeVar("K")
R = TypeVar("R")


_OK_PREFIX = '{"ok":true,"output":'
"""How a success record starts; the output's text follows verbatim, then ``}``."""


@dataclass(frozen=True)
class Outcome:
    """What one step attempt produced: an output, or a classified error."""

    output: Json = NULL
    error_class: ErrorClass | None = None
    error_type: str = ""
    message: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "output", Json.of(self.output))

    @property
    def ok(self) -> bool:
        """True for a successful attempt."""
        return self.error_class is None

    def to_json(self) -> str:
        """Compact JSON form stored in Redis (a success embeds the output's text as it is)."""
        if self.ok:
            return f"{_OK_PREFIX}{self.output.text}}}"
        assert self.error_class is not None
        return json.dumps(
            {
                "ok": False,
                "error_class": self.error_class.value,
                "error_type": self.error_type,
                "message": self.message,
            },
            separators=(",", ":"),
        )

    @classmethod
    def from_json(cls, text: str | bytes) -> Outcome:
        """Inverse of :meth:`to_json` (a success's output text is taken back unparsed)."""
        if isinstance(text, bytes):
            text = text.decode()
        if text.startswith(_OK_PREFIX) and text.endswith("}"):
            return cls(output=Json.from_text(text[len(_OK_PREFIX) : -1]))
        data = json.loads(text)
        if data["ok"]:
            return cls(output=data["output"])
        return cls(
            error_class=ErrorClass(data["error_class"]),
            error_type=data["error_type"],
            message=data["message"],
        )


class _Coalescer(Generic[K, R]):
    """Gathers calls made in one event-loop turn into one batched call (one Redis round trip)."""

    def __init__(self, run: Callable[[list[K]], Awaitable[list[R]]]) -> None:
        self._run = run
        self._items: list[K] = []
        self._futures: list[asyncio.Future[R]] = []
        self._flushing: set[asyncio.Task[None]] = set()

    async def submit(self, item: K) -> R:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[R] = loop.create_future()
        self._items.append(item)
        self._futures.append(future)
        if len(self._items) == 1:
            task = loop.create_task(self._flush())
            self._flushing.add(task)
            task.add_done_callback(self._flushing.discard)
        return await future

    async def _flush(self) -> None:
        await asyncio.sleep(0)  # let the other steps of this turn queue their calls
        items, futures = self._items, self._futures
        self._items, self._futures = [], []
        try:
            results = await self._run(items)
        except Exception as e:
            for future in futures:
                if not future.done():
                    future.set_exception(e)
            return
        for future, result in zip(futures, results, strict=True):
            if not future.done():
                future.set_result(result)


class RedisLedger:
    """Outcomes per idempotency key, kept ``ttl_s`` seconds."""

    def __init__(self, client: aioredis.Redis, key_prefix: str, ttl_s: int = DEFAULT_TTL_S):
        self._redis = client
        self._prefix = f"{key_prefix}:ledger:"
        self._ttl_s = ttl_s
        # Steps running at once share round trips: one MGET for their lookups, one
        # pipeline for their records.
        self._lookups: _Coalescer[str, Outcome | None] = _Coalescer(self.lookup_many)
        self._records: _Coalescer[tuple[str, Outcome], Outcome] = _Coalescer(self._record_many)

    @classmethod
    def from_url(cls, url: str, key_prefix: str, ttl_s: int = DEFAULT_TTL_S) -> RedisLedger:
        """A ledger on a new connection pool for ``url``."""
        client = aioredis.Redis.from_url(
            url, socket_timeout=SOCKET_TIMEOUT_S, socket_connect_timeout=SOCKET_TIMEOUT_S
        )
        return cls(client, key_prefix, ttl_s)

    async def lookup(self, idempotency_key: str) -> Outcome | None:
        """The recorded outcome of this attempt, or None if it never finished."""
        return await self._lookups.submit(idempotency_key)

    async def lookup_many(self, idempotency_keys: list[str]) -> list[Outcome | None]:
        """:meth:`lookup` for several keys in one round trip (MGET)."""
        if not idempotency_keys:
            return []
        raws = await self._redis.mget([self._prefix + key for key in idempotency_keys])
        return [None if raw is None else Outcome.from_json(raw) for raw in raws]

    async def record(self, idempotency_key: str, outcome: Outcome) -> Outcome:
        """Record ``outcome`` unless one is already there; returns the one that counts."""
        return await self._records.submit((idempotency_key, outcome))

    async def _record_many(self, items: list[tuple[str, Outcome]]) -> list[Outcome]:
        pipe = self._redis.pipeline(transaction=False)
        for key, outcome in items:
            pipe.set(self._prefix + key, outcome.to_json(), nx=True, ex=self._ttl_s)
        stored = await pipe.execute()
        lost = [key for (key, _), ok in zip(items, stored, strict=True) if not ok]
        earlier = dict(zip(lost, await self.lookup_many(lost), strict=True)) if lost else {}
        return [earlier.get(key) or outcome for key, outcome in items]

    async def ping(self) -> None:
        """One round trip to Redis (raises one of :data:`LEDGER_UNAVAILABLE` when down)."""
        await self._redis.ping()

    async def close(self) -> None:
        """Release the connection pool."""
        await self._redis.aclose()
