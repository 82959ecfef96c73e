"""The read-model API: FastAPI app factory and the ASGI middleware that records metrics
and writes the access log."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from kflow.api import (
    console,
    routes_batches,
    routes_commands,
    routes_dlq,
    routes_ops,
    routes_read,
)
from kflow.api.problems import install_problem_handlers, problem_response
from kflow.api.resources import ApiConfig, close_resources, open_resources
from kflow.api.responses import DocumentResponse
from kflow.api.server import RequestLimits
from kflow.observability import tracing
from kflow.observability.metrics import API_LATENCY, API_REQUESTS

log = logging.getLogger(__name__)


class CrashMiddleware:
    """An exception no handler took becomes a logged 500 problem, and the connection stays
    usable: Starlette re-raises it after answering, and uvicorn then drops the keep-alive
    connection (or, before any answer, writes a ``text/plain`` 500)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = [False]

        async def watch(message: Message) -> None:
            if message["type"] == "http.response.start":
                started[0] = True
            await send(message)

        try:
            await self.app(scope, receive, watch)
        except Exception:
            if started[0]:
                raise  # a body is half sent: only closing the connection can say so
            log.exception("unexpected error answering %s %s", scope["method"], scope["path"])
            response = problem_response(
                500, "internal", "Internal error",
                "the server failed to handle this request; it has been logged",
                scope["path"],
            )  # fmt: skip
            await response(scope, receive, send)


access_log = logging.getLogger("kflow.api.access")
PROBE_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})
"""Probed every few seconds: their access lines are logged at debug, not info."""

UNTRACED_PATHS = "/metrics,/healthz,/readyz,/static"
"""Paths that get no server span (scrapes, probes, console assets): regexes, comma-separated."""


class MetricsMiddleware:
    """Pure ASGI middleware: request count and latency by route template (streams included),
    and one access-log line per response (method, path, route, status, duration, client)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = [500]

        async def record_status(message: Message) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, record_status)
        finally:
            # the router records the matched route in the scope; label by its template
            route = getattr(scope.get("route"), "path", "unmatched")
            elapsed = time.perf_counter() - started
            API_LATENCY.labels(route, scope["method"]).observe(elapsed)
            API_REQUESTS.labels(route, scope["method"], str(status[0])).inc()
            path = scope.get("path", "")
            level = logging.DEBUG if path in PROBE_PATHS else logging.INFO
            if access_log.isEnabledFor(level):
                client = scope.get("client")
                access_log.log(
                    level,
                    "%s %s -> %d in %.1f ms",
                    scope["method"],
                    path,
                    status[0],
                    elapsed * 1000,
                    extra={
                        "method": scope["method"],
                        "path": path,
                        "route": route,
                        "status": status[0],
                        "duration_ms": round(elapsed * 1000, 2),
                        "client": f"{client[0]}:{client[1]}" if client else None,
                    },
                )


def create_app(config: ApiConfig) -> FastAPI:
    """The API bound to ``config``'s PostgreSQL schema, Redis prefix and topics."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.resources = await open_resources(config)
        try:
            yield
        finally:
            await close_resources(app.state.resources)

    app = FastAPI(
        title="kflow read-model API",
        version="1.0.0",
        description="Executions, steps and events of kflow workflows; commands go to Kafka.",
        lifespan=lifespan,
        docs_url=None,  # served by the console from packaged assets (offline)
        redoc_url=None,
        default_response_class=DocumentResponse,
    )
    install_problem_handlers(app)
    app.add_middleware(CrashMiddleware)
    app.add_middleware(RequestLimits, max_body_bytes=config.max_body_bytes)
    app.add_middleware(MetricsMiddleware)  # the last added runs first: it sees every answer
    app.include_router(routes_read.router)
    app.include_router(routes_commands.router)
    app.include_router(routes_ops.router)
    app.include_router(routes_dlq.router)
    app.include_router(routes_batches.router)
    console.install(app)
    if tracing.on():
        # A server span per request, continuing the caller's traceparent; commands sent
        # while it is current carry it on to the workflow (ADR 0037).
        from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

        FastAPIInstrumentor.instrument_app(
            app,
            tracer_provider=tracing.provider(),
            excluded_urls=UNTRACED_PATHS,
            # no span per ASGI message: an SSE stream would make one per event sent
            exclude_spans=["receive", "send"],
        )
    return app
