"""RFC 9457 problem details: every error the API returns has this shape."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import BaseRoute

from kflow.core.errors import KflowError

PROBLEM_TYPE_BASE = "https://kflow.dev/problems/"
PROBLEM_MEDIA_TYPE = "application/problem+json"


class Problem(KflowError):
    """An error to return as ``application/problem+json`` (raised in a request, answered by
    the handler :func:`install_problem_handlers` installs)."""

    def __init__(
        self,
        status: int,
        slug: str,
        title: str,
        detail: str,
        headers: dict[str, str] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.slug = slug
        self.title = title
        self.detail = detail
        self.headers = headers
        self.extra = extra


def problem_response(
    status: int,
    slug: str,
    title: str,
    detail: str,
    instance: str,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> JSONResponse:
    """Build the problem JSON response."""
    body: dict[str, Any] = {
        "type": PROBLEM_TYPE_BASE + slug,
        "title": title,
        "status": status,
        "detail": detail,
        "instance": instance,
        **extra,
    }
    return JSONResponse(body, status_code=status, media_type=PROBLEM_MEDIA_TYPE, headers=headers)


def unavailable(dependency: str, err: BaseException, advice: str = "retry later") -> Problem:
    """The 503 for a dependency that is down; retrying later can help."""
    return Problem(
        503,
        "dependency-unavailable",
        "Dependency unavailable",
        f"{dependency} is not reachable right now ({type(err).__name__}); {advice}",
        headers={"Retry-After": "5"},
        dependency=dependency,
    )


def _validation_detail(exc: RequestValidationError) -> tuple[str, list[dict[str, Any]]]:
    errors = []
    for e in exc.errors():
        loc = ".".join(str(p) for p in e.get("loc", ()) if p != "body") or "request"
        errors.append({"field": loc, "message": str(e.get("msg", "invalid"))})
    first = errors[0] if errors else {"field": "request", "message": "invalid"}
    return f"{first['field']}: {first['message']}", errors


def allowed_methods(routes: Sequence[BaseRoute], path: str) -> list[str]:
    """Every method some route serves at ``path`` (routes of included routers too)."""
    found: set[str] = set()
    for route in routes:
        inner = getattr(route, "original_router", None)  # FastAPI's included router
        if inner is not None:
            found.update(allowed_methods(inner.routes, path))
            continue
        regex, methods = getattr(route, "path_regex", None), getattr(route, "methods", None)
        if regex is not None and methods and regex.match(path):
            found.update(methods)
    return sorted(found)


def install_problem_handlers(app: FastAPI) -> None:
    """Make every error, including framework ones, a problem response."""

    @app.exception_handler(Problem)
    async def _problem(request: Request, exc: Problem) -> JSONResponse:
        return problem_response(
            exc.status,
            exc.slug,
            exc.title,
            exc.detail,
            request.url.path,
            exc.headers,
            **exc.extra,
        )

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        detail, errors = _validation_detail(exc)
        return problem_response(
            422, "invalid-request", "Invalid request", detail, request.url.path, errors=errors
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        titles = {404: "Not found", 405: "Method not allowed", 413: "Payload too large"}
        title = titles.get(exc.status_code, "HTTP error")
        headers = dict(exc.headers) if exc.headers else {}
        detail = str(exc.detail)
        if exc.status_code == 405:
            allowed = allowed_methods(request.app.routes, request.url.path)
            if allowed:  # the router names only the first route of the path
                headers["Allow"] = ", ".join(allowed)
                detail = f"{request.method} is not allowed on this path; use {headers['Allow']}"
        return problem_response(
            exc.status_code, "http-error", title, detail, request.url.path, headers or None
        )

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        return problem_response(
            500,
            "internal",
            "Internal error",
            "the server failed to handle this request; it has been logged",
            request.url.path,
        )
