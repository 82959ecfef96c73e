"""Templates, their filters, and the route class that turns console errors into pages."""

from __future__ import annotations

import time
from collections.abc import Callable, Coroutine, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import orjson
from fastapi import Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.routing import APIRoute
from jinja2 import Environment, FileSystemLoader, StrictUndefined

from kflow.api.apikeys import Principal, Scope
from kflow.api.console.jsonview import pretty
from kflow.api.console.session import (
    CSRF_FIELD,
    CSRF_HEADER,
    Refused,
    SignInRequired,
    csrf_token,
    session_token,
)
from kflow.api.problems import Problem

HERE = Path(__file__).parent
STATIC_DIR = HERE / "static"
STATUS_CLASSES = frozenset(
    {"running", "paused", "completed", "failed", "cancelled", "succeeded", "waiting", "review",
     "backoff", "ready", "skipped", "pending"}
)  # fmt: skip


def when(value: datetime | int | None) -> str:
    """A UTC time as ``YYYY-MM-DD HH:MM:SS.mmm`` (epoch ms accepted), or an empty string."""
    if value is None:
        return ""
    at = value if isinstance(value, datetime) else datetime.fromtimestamp(value / 1000, UTC)
    return at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


def compact(value: Any, limit: int = 300) -> str:
    """One-line JSON, cut at ``limit`` characters."""
    text = orjson.dumps(value, default=str).decode()
    return text if len(text) <= limit else text[: limit - 1] + "…"


_SHOWN_ELSEWHERE = frozenset({"type", "workflow_id", "seq", "at"})


def event_fields(body: dict[str, Any]) -> str:
    """An event body without what its row already shows (type, workflow, seq, time)."""
    return compact({k: v for k, v in body.items() if k not in _SHOWN_ELSEWHERE})


def status_class(status: str | None) -> str:
    """CSS class of a status (unknown ones share one)."""
    return f"st-{status}" if status in STATUS_CLASSES else "st-other"


env = Environment(
    loader=FileSystemLoader(HERE / "templates"),
    autoescape=True,
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)
env.filters["when"] = when
env.filters["status_class"] = status_class
env.filters["compact"] = compact
env.filters["event_fields"] = event_fields
env.filters["pretty"] = lambda v: pretty(v).text
env.filters["urlpart"] = lambda v: quote(str(v), safe="")
env.globals["CSRF_FIELD"] = CSRF_FIELD
env.globals["CSRF_HEADER"] = CSRF_HEADER


def render(
    request: Request,
    template: str,
    context: Mapping[str, Any],
    who: Principal | None = None,
    status: int = 200,
) -> HTMLResponse:
    """Render ``template``; pages of a signed-in user get the nav, scopes and CSRF token."""
    ctx: dict[str, Any] = {"request": request, "who": who, "nav": ""}
    if who is not None:
        ctx["csrf"] = csrf_token(session_token(request))
        ctx["can_write"] = who.allows(Scope.WRITE)
        ctx["is_admin"] = who.allows(Scope.ADMIN)
    ctx.update(context)
    html = env.get_template(template).render(ctx)
    return HTMLResponse(html, status_code=status, headers={"Cache-Control": "no-store"})


def _is_htmx(request: Request) -> bool:
    return request.headers.get("hx-request") == "true"


def error_page(request: Request, status: int, title: str, detail: str) -> HTMLResponse:
    """The error as a page (or as a fragment for an htmx request)."""
    template = "error_fragment.html" if _is_htmx(request) else "error.html"
    return render(
        request, template, {"title": title, "detail": detail, "status": status}, None, status
    )


class ConsoleRoute(APIRoute):
    """Console routes answer with HTML: sign-in redirects and refusals become pages."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        inner = super().get_route_handler()

        async def handler(request: Request) -> Response:
            started = time.perf_counter()
            response = await self._answer(inner, request)
            # how long the page took to build (browsers show it; bench/console_bench.py reads it)
            spent_ms = (time.perf_counter() - started) * 1000
            response.headers["Server-Timing"] = f"app;dur={spent_ms:.1f}"
            return response

        return handler

    @staticmethod
    async def _answer(
        inner: Callable[[Request], Coroutine[Any, Any, Response]], request: Request
    ) -> Response:
        try:
            return await inner(request)
        except SignInRequired as e:
            target = f"/ui/login?next={quote(e.next_url, safe='/')}"
            if _is_htmx(request):
                return Response(status_code=204, headers={"HX-Redirect": target})
            return RedirectResponse(target, status_code=303)
        except Refused as e:
            return error_page(request, e.status, "Refused", e.detail)
        except Problem as e:
            return error_page(request, e.status, e.title, e.detail)
