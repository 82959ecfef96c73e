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


@node("test.fail_until_fixed")
def fail_until_fixed(value: dict[str, Any], ctx: StepContext) -> dict[str, Any]:
    """Fails permanently until ``{prefix}fixed`` exists in Redis; counts runs per step."""
    prefix = value["redis_prefix"]
    _redis().hincrby(f"{prefix}effects", ctx.step_key, 1)
    _redis().hset(f"{prefix}keys", ctx.step_key, ctx.idempotency_key)
    if not _redis().exists(f"{prefix}fixed"):
        raise PermanentError("not fixed yet")
    return {"fixed": True, "attempt": ctx.attempt}


@node("test.review")
def review(value: dict[str, Any]) -> None:
    """Always asks for review."""
    raise NeedsReview("please look at this")


EDGE_DOCUMENT: dict[str, Any] = {
    "big": 2**70,
    "negative_big": -(2**65) - 1,
    "i64_edge": 2**63,
    "lone_surrogate": "\ud800",
    "low_then_high": "\udc00\ud83d",
    "emoji": "😀",
    "controls": "\x00\x1f\x85\u2028\u2029",
    "tiny": 1e-7,
    "huge": 1.5e300,
    "negative_zero": -0.0,
    "unicode_key_ü": None,
    "": [[], {}, [[[{"deep": True}]]]],
}
"""What Python's json writes exactly and orjson does not (ADR 0026): kept end to end."""


@node("test.edge_values")
def edge_values(value: Any) -> dict[str, Any]:
    """Returns :data:`EDGE_DOCUMENT`."""
    del value
    return EDGE_DOCUMENT


@node("test.not_finite")
def not_finite(value: Any) -> dict[str, Any]:
    """Returns a NaN, which is not JSON (json.dumps with allow_nan=False refuses it)."""
    del value
    return {"ratio": float("nan")}
