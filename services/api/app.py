"""The read-model API: FastAPI app factory and the ASGI middleware that records metrics."""

from __future__ import annotations

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
from kflow.api.problems import install_problem_handlers
from kflow.api.resources import ApiConfig, close_resources, open_resources
from kflow.api.responses import DocumentResponse
from kflow.observability.metrics import API_LATENCY, API_REQUESTS


class MetricsMiddleware:
    """Pure ASGI middleware: request count and latency by route template (streams included)."""

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
            API_LATENCY.labels(route, scope["method"]).observe(time.perf_counter() - started)
            API_REQUESTS.labels(route, scope["method"], str(status[0])).inc()


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
    app.add_middleware(MetricsMiddleware)
    app.include_router(routes_read.router)
    app.include_router(routes_commands.router)
    app.include_router(routes_ops.router)
    app.include_router(routes_dlq.router)
    app.include_router(routes_batches.router)
    console.install(app)
    return app
