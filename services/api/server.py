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
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send
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


def _body_detail(limit: int) -> str:
    return f"request body: over the limit of {limit} bytes; pass a reference to large data instead"


class RequestLimits:
    """ASGI middleware: the request head (URL and headers) and body are bounded before any
    of them is parsed. A head over ``MAX_REQUEST_HEAD_BYTES`` gets the 414/431 problem (h11
    enforces its limit only on a head that arrives in pieces, so this makes the limit the
    same however the bytes arrive); a body over ``max_body_bytes`` gets a 413 problem, from
    its Content-Length at once, or as soon as that many bytes of a chunked body arrive."""

    def __init__(self, app: ASGIApp, max_body_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        target = len(scope.get("raw_path") or b"") + len(scope.get("query_string") or b"") + 1
        headers = [(k, len(k) + len(v) + 2) for k, v in scope["headers"]]
        refusal: JSONResponse | None = None
        if target + sum(size for _, size in headers) > MAX_REQUEST_HEAD_BYTES:
            status, title, detail = too_large(target, headers)
            refusal = problem_response(
                status, "request-too-large", title, detail, scope["path"][:200],
                headers={"Connection": "close"},
            )  # fmt: skip
        elif _content_length(scope) > self.max_body_bytes:
            refusal = problem_response(
                413, "payload-too-large", "Payload too large", _body_detail(self.max_body_bytes),
                scope["path"][:200], headers={"Connection": "close"},
            )  # fmt: skip
        if refusal is not None:
            await refusal(scope, receive, send)
            return
        received = 0

        async def bounded() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body_bytes:
                    # FastAPI lets an HTTPException out of body reading: the problem handler
                    raise HTTPException(413, _body_detail(self.max_body_bytes))
            return message

        await self.app(scope, bounded, send)


def _content_length(scope: Scope) -> int:
    for name, value in scope["headers"]:
        if name == b"content-length":
            return int(value) if value.isdigit() else 0  # h11 refuses a malformed one
    return 0


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
