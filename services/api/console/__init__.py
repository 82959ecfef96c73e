"""The ops console: server-rendered pages at ``/ui`` over the read model and the commands.

``install(app)`` mounts it on the read-model API (one process, no CDN: htmx, Swagger UI and
ReDoc are shipped under ``static/vendor``). See ADR 0080.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.responses import RedirectResponse
from fastapi.staticfiles import StaticFiles

from kflow.api.console import (
    routes_actions,
    routes_auth,
    routes_batches,
    routes_ops,
    routes_workflows,
)
from kflow.api.console.docs import docs_router
from kflow.api.console.render import STATIC_DIR
from kflow.api.console.state import close_console_state


def install(app: FastAPI) -> None:
    """Mount the console, its static files, offline ``/docs`` and ``/redoc``, and ``/`` -> ``/ui``.

    Create ``app`` with ``docs_url=None, redoc_url=None`` (these pages replace FastAPI's CDN ones).
    """
    app.mount("/ui/static", StaticFiles(directory=STATIC_DIR), name="console-static")
    app.include_router(routes_auth.router)
    app.include_router(routes_ops.router)
    app.include_router(routes_batches.router)
    app.include_router(routes_workflows.router)
    app.include_router(routes_actions.router)
    app.include_router(docs_router(app))

    @app.get("/", include_in_schema=False)
    def root() -> RedirectResponse:
        return RedirectResponse("/ui", status_code=307)

    inner = app.router.lifespan_context

    @asynccontextmanager
    async def lifespan(application: Any) -> AsyncIterator[Any]:
        async with inner(application) as state:
            try:
                yield state
            finally:
                await close_console_state(app)

    app.router.lifespan_context = lifespan
