"""Console sign-in: the API key in an HttpOnly SameSite=Strict cookie, checked like a bearer key.

The cookie holds the key itself, so a page request is verified exactly as the JSON API
verifies ``Authorization: Bearer`` (same cache, same revocation, same scopes and tenant).
Form posts also carry a CSRF token: an HMAC of a fixed label keyed by the key, which only a
page rendered for that key contains (the cookie is not readable by scripts), and a post
whose ``Origin`` names another site is refused.
"""

from __future__ import annotations

import hashlib
import hmac
from urllib.parse import parse_qsl, urlsplit

from fastapi import Request

from kflow.api.apikeys import Principal, Scope
from kflow.api.auth import principal_for_token, resources
from kflow.api.problems import Problem
from kflow.core.errors import KflowError

COOKIE = "kflow_console"
CSRF_FIELD = "csrf"
CSRF_HEADER = "x-csrf-token"
MAX_FORM_BYTES = 1_100_000
_CSRF_LABEL = b"kflow console csrf v1"


class SignInRequired(KflowError):
    """The request has no valid console cookie; the handler sends the browser to sign in."""

    def __init__(self, reason: str, next_url: str = "/ui") -> None:
        super().__init__(reason)
        self.reason = reason
        self.next_url = next_url


class Refused(KflowError):
    """A console request that cannot be served; shown on the page with its fix."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


def csrf_token(token: str) -> str:
    """The CSRF token of pages rendered for API key ``token``."""
    return hmac.new(token.encode(), _CSRF_LABEL, hashlib.sha256).hexdigest()


def _next_url(request: Request) -> str:
    if request.method == "GET" and not request.headers.get("hx-request"):
        query = f"?{request.url.query}" if request.url.query else ""
        return f"{request.url.path}{query}"
    return "/ui"


async def signed_in(request: Request) -> Principal:
    """The principal of the console cookie (a dependency of every console page)."""
    token = request.cookies.get(COOKIE)
    if not token:
        raise SignInRequired("sign in with an API key", _next_url(request))
    try:
        return await principal_for_token(resources(request), token)
    except Problem as e:
        if e.status == 401:
            raise SignInRequired(f"{e.detail}; sign in again", _next_url(request)) from e
        raise


def session_token(request: Request) -> str:
    """The API key of the signed-in user (only after ``signed_in`` succeeded)."""
    return request.cookies.get(COOKIE, "")


def require_scope(who: Principal, scope: Scope) -> None:
    """Refuse (403) an action the key's scopes do not allow, whatever the page showed."""
    if not who.allows(scope):
        raise Refused(
            403, f"this API key lacks the '{scope}' scope; sign in with a key created with "
            f"--scope {scope}",
        )  # fmt: skip


def check_origin(request: Request) -> None:
    """Refuse a post sent from another site (browsers send ``Origin`` with every POST)."""
    origin = request.headers.get("origin")
    if origin is None or origin == "null":
        return
    host = request.headers.get("host", "")
    if urlsplit(origin).netloc != host:
        raise Refused(403, f"Origin {origin!r} is not this console; post from {host} itself")


async def read_form(request: Request) -> dict[str, str]:
    """An ``application/x-www-form-urlencoded`` body (bounded), the last value of each field."""
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM_BYTES:
            raise Refused(413, f"the form is over {MAX_FORM_BYTES} bytes; send less")
    try:
        return dict(parse_qsl(body.decode(), keep_blank_values=True, max_num_fields=100))
    except (UnicodeDecodeError, ValueError) as e:
        raise Refused(
            400, f"the form could not be read ({e}); post it from the console page"
        ) from e


async def verified_form(request: Request) -> dict[str, str]:
    """The posted form, after the Origin and CSRF checks."""
    check_origin(request)
    form = await read_form(request)
    sent = form.get(CSRF_FIELD) or request.headers.get(CSRF_HEADER, "")
    if not hmac.compare_digest(sent.encode(), csrf_token(session_token(request)).encode()):
        raise Refused(403, "the form's CSRF token is missing or stale; reload the page and retry")
    return form
