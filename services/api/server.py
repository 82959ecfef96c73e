"""How the API is served: uvicorn on h11, with every error answered as a problem JSON (ADR 0048).

uvicorn answers a request it cannot parse (a request head over the h11 limit, a malformed
request line or header) itself, before the app sees it, with a ``text/plain`` 400. Here the
h11 protocol class answers the same with ``application/problem+json``: 431 for a header
that makes the head too long (naming the header), 414 for a request line (URL) too long,
400 for anything else that is not HTTP/1.1. ``kflow run api`` and the tests both serve the
app with :func:`uvicorn_config`, so what the tests see is what users get.
"""

from __future__ import annotations

from typing import Any

import h11
import uvicorn
from starlette.types import ASGIApp, Receive, Scope, Send
from uvicorn.protocols.http.h11_impl import H11Protocol

from kflow.api.problems import PROBLEM_MEDIA_TYPE, PROBLEM_TYPE_BASE, problem_response
from kflow.core.jsondoc import dumps

MAX_REQUEST_HEAD_BYTES = 32 * 1024
"""Largest request line plus headers the API reads (nginx's default is 4 x 8 KB); an API key
is about 60 bytes. Larger heads get a 431 (or 414) problem."""


def too_large(target_bytes: int, headers: list[tuple[bytes, int]]) -> tuple[int, str, str]:
    """``(status, title, detail)`` for a request head over the limit: 414 when the request
    target (URL) is the largest part, else 431 naming the largest header."""
    name, size = max(headers, key=lambda h: h[1], default=(b"", 0))
    if target_bytes >= size:
        return (
            414, "URI too long",
            f"the URL is {target_bytes} bytes and a request head may hold "
            f"{MAX_REQUEST_HEAD_BYTES}; send a shorter URL (filters and cursors fit in a few "
            "hundred bytes)",
        )  # fmt: skip
    label = name.decode("latin-1")[:64].title() or "a header"
    return (
        431, "Request header fields too large",
        f"{label}: {size} bytes, and a request head may hold {MAX_REQUEST_HEAD_BYTES}; send a "
        "shorter value (an API key is about 60 bytes: 'Authorization: Bearer kf_...')",
    )  # fmt: skip


def _framing_problem(head: bytes) -> tuple[int, str, str, str]:
    """``(status, title, detail, instance)`` for the request head h11 could not parse."""
    request_line, *lines = head.split(b"\n")
    parts = request_line.strip().split(b" ")
    target = parts[1] if len(parts) >= 2 else b"/"
    instance = target.partition(b"?")[0].decode("latin-1")[:200]
    if len(head) <= MAX_REQUEST_HEAD_BYTES:
        detail = "the request is not valid HTTP/1.1 (request line or a header); fix how it is sent"
        return 400, "Bad request", detail, instance
    sizes = [(line.partition(b":")[0].strip(), len(line)) for line in lines]
    return (*too_large(len(request_line), sizes), instance)


class RequestHeadLimit:
    """ASGI middleware: a request whose URL and headers exceed ``MAX_REQUEST_HEAD_BYTES`` gets
    the 414/431 problem. h11 enforces its limit only on a head that arrives in pieces, so
    this makes the limit the same however the bytes arrive."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            target = len(scope.get("raw_path") or b"") + len(scope.get("query_string") or b"") + 1
            headers = [(k, len(k) + len(v) + 2) for k, v in scope["headers"]]
            if target + sum(size for _, size in headers) > MAX_REQUEST_HEAD_BYTES:
                status, title, detail = too_large(target, headers)
                response = problem_response(
                    status, "request-too-large", title, detail, scope["path"][:200],
                    headers={"Connection": "close"},
                )  # fmt: skip
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


class ProblemH11Protocol(H11Protocol):
    """uvicorn's h11 protocol, answering unparsable requests with a problem JSON."""

    def send_400_response(self, msg: str) -> None:
        status, title, detail, instance = _framing_problem(self.conn.trailing_data[0])
        body = dumps(
            {
                "type": PROBLEM_TYPE_BASE
                + ("bad-request" if status == 400 else "request-too-large"),
                "title": title,
                "status": status,
                "detail": detail,
                "instance": instance,
            }
        ).encode()
        headers = [
            (b"content-type", PROBLEM_MEDIA_TYPE.encode()),
            (b"content-length", str(len(body)).encode()),
            (b"connection", b"close"),
        ]
        for event in (
            h11.Response(status_code=status, headers=headers, reason=title.encode()),
            h11.Data(data=body),
            h11.EndOfMessage(),
        ):
            self.transport.write(self.conn.send(event) or b"")
        self.transport.close()


def uvicorn_config(app: Any, host: str, port: int, **options: Any) -> uvicorn.Config:
    """The uvicorn configuration the API is served with (``options`` go to uvicorn)."""
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        http=ProblemH11Protocol,
        h11_max_incomplete_event_size=MAX_REQUEST_HEAD_BYTES,
        **options,
    )
