"""Node types used by the runtime tests (loaded with ``--nodes tests.runtime.nodes``)."""

from __future__ import annotations

import os
import time
from typing import Any

import redis

from kflow.core.errors import NeedsReview, PermanentError
from kflow.processor.context import StepContext
from kflow.processor.registry import node

_clients: dict[str, redis.Redis] = {}


def _redis() -> redis.Redis:
    url = os.environ.get("KFLOW_REDIS_URL", "redis://127.0.0.1:6379/0")
    if url not in _clients:
        _clients[url] = redis.Redis.from_url(url)
    return _clients[url]


@node("test.count")
def count(value: dict[str, Any], ctx: StepContext) -> dict[str, Any]:
    """A side effect to count: INCR ``{prefix}effects`` per step key, optionally taking time."""
    prefix = value["redis_prefix"]
    _redis().hincrby(f"{prefix}effects", ctx.step_key, 1)
    _redis().hset(f"{prefix}keys", ctx.step_key, ctx.idempotency_key)
    work_s = float(value.get("work_s", 0))
    if work_s:
        time.sleep(work_s)
    return {"step": ctx.node_id, "n": value.get("n")}


@node("test.fail")
def fail(value: dict[str, Any]) -> None:
    """Always fails permanently."""
    raise PermanentError(str(value.get("message", "boom")))


@node("test.review")
def review(value: dict[str, Any]) -> None:
    """Always asks for review."""
    raise NeedsReview("please look at this")
