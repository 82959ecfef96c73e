"""Operational endpoints: liveness, readiness, Prometheus metrics."""

from __future__ import annotations

import asyncio
import contextlib
import time

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from kflow.api.auth import resources
from kflow.api.openapi_responses import TRANSPORT, problems
from kflow.observability.lag import LagUnavailable, consumer_lag
from kflow.observability.queues import publish_queue_metrics, queue_status

router = APIRouter(tags=["operations"])


@router.get("/healthz", responses=problems(*TRANSPORT))
async def healthz() -> dict[str, str]:
    """The process is up (no dependency is checked)."""
    return {"status": "ok"}


@router.get(
    "/readyz",
    responses={
        **problems(*TRANSPORT),
        503: {"description": "a dependency is down", "content": {"application/json": {}}},
    },
)
async def readyz(request: Request) -> JSONResponse:
    """Kafka, PostgreSQL and Redis all answer; 503 names the ones that do not."""
    checks = await resources(request).check_ready()
    ready = all(v == "ok" for v in checks.values())
    body = {"status": "ready" if ready else "unavailable", "checks": checks}
    return JSONResponse(body, status_code=200 if ready else 503)


_LAG_REFRESH_S = 10.0
_lag_refreshed = [0.0]


async def _refresh_lag(request: Request) -> None:
    """Update ``kflow_consumer_lag`` for the prefix's groups and the ``kflow_queue_*`` gauges,
    at most every 10 s."""
    if time.monotonic() - _lag_refreshed[0] < _LAG_REFRESH_S:
        return
    _lag_refreshed[0] = time.monotonic()
    config = resources(request).config
    with contextlib.suppress(LagUnavailable):
        await asyncio.to_thread(consumer_lag, config.kafka_bootstrap, config.topic_prefix, 3.0)
    with contextlib.suppress(LagUnavailable):  # kflow_queue_*: queues no processor serves
        statuses = await asyncio.to_thread(
            queue_status, config.kafka_bootstrap, config.topic_prefix, 3.0
        )
        publish_queue_metrics(statuses)


@router.get(
    "/metrics",
    response_class=Response,
    responses={
        **problems(*TRANSPORT),
        200: {"content": {CONTENT_TYPE_LATEST: {"schema": {"type": "string"}}}},
    },
)
async def metrics(request: Request) -> Response:
    """Prometheus exposition of this process's metrics, with consumer lag of every kflow group."""
    await _refresh_lag(request)
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
