"""Built-in processor node types: ``noop``, ``echo``, ``delay``, ``http``, ``flaky``.

``sleep`` and ``approval`` are built into the orchestrator instead (a timer and a
wait for a signal, see ``kflow.core.definition``): they hold no worker while
they wait.
"""

from __future__ import annotations

import asyncio
import hashlib
from typing import Any

import httpx
from pydantic import BaseModel, ConfigDict, Field

from kflow.core.errors import PermanentError, TransientError
from kflow.processor.context import StepContext
from kflow.processor.registry import node

HEARTBEAT_EVERY_S = 1.0


@node("noop", inline=True)
def noop(value: Any) -> dict[str, Any]:
    """Do nothing; output ``{}``."""
    del value
    return {}


@node("echo", inline=True)
def echo(value: Any) -> Any:
    """Return the input unchanged."""
    return value


class DelayInput(BaseModel):
    """Input of the ``delay`` node."""

    model_config = ConfigDict(extra="allow")
    seconds: float = Field(0.0, ge=0, le=86_400, description="how long to sleep")


@node("delay", input_model=DelayInput)
async def delay(value: DelayInput, ctx: StepContext) -> dict[str, float]:
    """Hold a worker for ``seconds``, sending heartbeats; output ``{"slept": seconds}``."""
    remaining = value.seconds
    while remaining > 0:
        chunk = min(remaining, HEARTBEAT_EVERY_S)
        await asyncio.sleep(chunk)
        remaining -= chunk
        if remaining > 0:
            ctx.heartbeat({"remaining_s": round(remaining, 3)})
    return {"slept": value.seconds}


class HttpInput(BaseModel):
    """Input of the ``http`` node."""

    model_config = ConfigDict(extra="forbid")
    url: str = Field(description="absolute http(s) URL")
    method: str = Field("GET", description="HTTP method")
    headers: dict[str, str] = Field(default_factory=dict)
    json_body: Any = Field(None, alias="json", description="JSON request body")
    timeout_s: float = Field(10.0, gt=0, le=600)


_TRANSIENT_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})


def http_error_for_status(status: int, text: str) -> Exception | None:
    """The error a response status maps to: 408/429/5xx transient, other 4xx/5xx permanent."""
    if status < 400:
        return None
    message = f"HTTP {status}: {text[:300]}"
    if status in _TRANSIENT_STATUSES:
        return TransientError(message)
    return PermanentError(message)


@node("http", input_model=HttpInput)
async def http(value: HttpInput, ctx: StepContext) -> dict[str, Any]:
    """Call an HTTP endpoint; output ``{"status", "headers", "body"}`` (body JSON if it parses).

    Sends ``Idempotency-Key: <step idempotency key>`` so the server can deduplicate, and
    the attempt's ``traceparent`` when tracing is on, so the server's spans join the trace.
    """
    headers = {"Idempotency-Key": ctx.idempotency_key, **value.headers}
    if ctx.traceparent is not None:
        headers.setdefault("traceparent", ctx.traceparent)
    async with httpx.AsyncClient(timeout=value.timeout_s) as client:
        response = await client.request(
            value.method.upper(), value.url, headers=headers, json=value.json_body
        )
    error = http_error_for_status(response.status_code, response.text)
    if error is not None:
        raise error
    try:
        body: Any = response.json()
    except ValueError:
        body = response.text
    return {"status": response.status_code, "headers": dict(response.headers), "body": body}


class FlakyInput(BaseModel):
    """Input of the ``flaky`` node."""

    model_config = ConfigDict(extra="allow")
    fail_attempts: int = Field(0, ge=0, description="fail attempts 1..fail_attempts")
    failure_rate: float = Field(
        0.0, ge=0, le=1, description="extra failure chance, derived from the step key"
    )
    permanent: bool = Field(False, description="raise PermanentError instead of TransientError")


def _chance(key: str) -> float:
    digest = hashlib.sha256(key.encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


@node("flaky", input_model=FlakyInput)
def flaky(value: FlakyInput, ctx: StepContext) -> dict[str, Any]:
    """Fail on purpose: the first ``fail_attempts`` attempts, or by a repeatable chance."""
    fails = ctx.attempt <= value.fail_attempts or _chance(ctx.idempotency_key) < value.failure_rate
    if fails:
        error = PermanentError if value.permanent else TransientError
        raise error(f"flaky failure on attempt {ctx.attempt}")
    return {"attempt": ctx.attempt}
