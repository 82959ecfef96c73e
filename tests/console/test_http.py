"""The console over plain HTTP: sign-in, CSRF and Origin checks, redirects, offline docs."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import httpx
import pytest

from tests.readside.conftest import ApiServer

pytestmark = pytest.mark.integration


@contextmanager
def _signed_in(api: ApiServer, token: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=api.url) as client:
        r = client.post("/ui/login", data={"api_key": token, "next": "/ui/workflows"})
        assert r.status_code == 303 and r.headers["location"] == "/ui/workflows"
        cookie = r.headers["set-cookie"].lower()
        assert "httponly" in cookie and "samesite=strict" in cookie and "path=/ui" in cookie
        yield client


def test_pages_need_a_signed_in_key_and_a_bad_key_is_told_why(
    api: ApiServer, make_key: Callable[..., str]
) -> None:
    r = httpx.get(f"{api.url}/")
    assert r.status_code == 307 and r.headers["location"] == "/ui"
    r = httpx.get(f"{api.url}/ui/workflows?status=running")
    assert r.status_code == 303
    assert r.headers["location"] == "/ui/login?next=/ui/workflows%3Fstatus%3Drunning"
    r = httpx.post(f"{api.url}/ui/login", data={"api_key": "kf_000000000000_" + "x" * 43})
    assert r.status_code == 401 and "unknown or revoked API key" in r.text
    assert "set-cookie" not in r.headers
    with _signed_in(api, make_key("acme", "read")) as client:
        page = client.get("/ui/workflows")
        assert page.status_code == 200 and "tenant acme" in page.text
        # the JSON API still wants its bearer header: the cookie is the console's only
        assert client.get("/workflows").status_code == 401


def test_posts_without_the_csrf_token_or_from_another_origin_are_refused(
    api: ApiServer, make_key: Callable[..., str]
) -> None:
    with _signed_in(api, make_key("acme", "write")) as client:
        r = client.post("/ui/workflows/wf-1/cancel", data={"confirmed": "yes"})
        assert r.status_code == 403 and "CSRF token" in r.text
        page = client.get("/ui/workflows").text
        token = page.split('name="csrf" value="')[1].split('"')[0]
        r = client.post(
            "/ui/workflows/wf-1/cancel",
            data={"confirmed": "yes", "csrf": token},
            headers={"Origin": "https://evil.example"},
        )
        assert r.status_code == 403 and "is not this console" in r.text
        # with both, the command goes through the JSON API's handler (404: no such workflow)
        r = client.post("/ui/workflows/wf-1/cancel", data={"confirmed": "yes", "csrf": token})
        assert r.status_code == 404 and "no workflow" in r.text
        r = client.post("/ui/logout", data={"csrf": token})
        assert r.status_code == 303 and 'kflow_console=""' in r.headers["set-cookie"]


def test_docs_are_served_from_packaged_assets(api: ApiServer) -> None:
    html = httpx.get(f"{api.url}/docs").text
    assert "/ui/static/vendor/swagger-ui/swagger-ui-bundle.js" in html and "cdn" not in html
    assert (
        httpx.get(f"{api.url}/ui/static/vendor/swagger-ui/swagger-ui-bundle.js").status_code == 200
    )
    redoc = httpx.get(f"{api.url}/redoc").text
    assert (
        "/ui/static/vendor/redoc/redoc.standalone.js" in redoc and "fonts.googleapis" not in redoc
    )
    assert httpx.get(f"{api.url}/openapi.json").json()["paths"].keys().isdisjoint({"/ui/workflows"})
