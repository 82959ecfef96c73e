"""Sign in with an API key (stored in an HttpOnly SameSite=Strict cookie) and sign out."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from kflow.api.auth import principal_for_token, resources
from kflow.api.console.render import ConsoleRoute, render
from kflow.api.console.session import COOKIE, check_origin, read_form, verified_form
from kflow.api.problems import Problem

router = APIRouter(prefix="/ui", route_class=ConsoleRoute, include_in_schema=False)
COOKIE_MAX_AGE_S = 8 * 3600


def _safe_next(target: str | None) -> str:
    """Only console paths (no open redirect to another site)."""
    if target and target.startswith("/ui") and not target.startswith("//"):
        return target
    return "/ui/workflows"


@router.get("/login", response_class=HTMLResponse)
def login_page(
    request: Request, next: Annotated[str | None, Query(max_length=2000)] = None
) -> HTMLResponse:
    """The sign-in form."""
    return render(request, "login.html", {"next": _safe_next(next), "error": None})


@router.post("/login")
async def login(request: Request) -> Response:
    """Check the key like a bearer key; on success set the cookie and go to ``next``."""
    check_origin(request)
    form = await read_form(request)
    token = form.get("api_key", "").strip()
    target = _safe_next(form.get("next"))
    try:
        await principal_for_token(resources(request), token)
    except Problem as e:
        if e.status != 401:
            raise
        context = {"next": target, "error": f"{e.detail}: paste a key made by kflow apikey create"}
        return render(request, "login.html", context, status=401)
    response = RedirectResponse(target, status_code=303)
    response.set_cookie(
        COOKIE, token, max_age=COOKIE_MAX_AGE_S, path="/ui", httponly=True, samesite="strict",
        secure=request.url.scheme == "https",
    )  # fmt: skip
    return response


@router.post("/logout")
async def logout(request: Request) -> Response:
    """Forget the key (the cookie); the key itself stays valid."""
    await verified_form(request)
    response = RedirectResponse("/ui/login", status_code=303)
    response.delete_cookie(COOKIE, path="/ui", httponly=True, samesite="strict")
    return response
