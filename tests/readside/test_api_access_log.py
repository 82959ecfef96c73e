"""The API's access log: one JSON line per response, with the route template and status."""

from __future__ import annotations

import asyncio
import io
import json
import logging
from collections.abc import Iterator

import httpx
import pytest
from fastapi import FastAPI

from kflow.api.app import MetricsMiddleware
from kflow.observability.logging import configure_logging


@pytest.fixture
def log_stream() -> Iterator[io.StringIO]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    stream = io.StringIO()
    configure_logging("info", json=True, stream=stream)
    yield stream
    for handler in list(root.handlers):
        root.removeHandler(handler)
    for handler in handlers:
        root.addHandler(handler)
    root.setLevel(level)


def test_each_response_is_one_json_access_line(log_stream: io.StringIO) -> None:
    app = FastAPI()

    @app.get("/workflows/{workflow_id}")
    async def one(workflow_id: str) -> dict[str, str]:
        return {"id": workflow_id}

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    app.add_middleware(MetricsMiddleware)

    async def requests() -> list[int]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
            paths = ["/workflows/wf-1", "/nope", "/healthz"]  # probes: debug, not logged
            return [(await client.get(path)).status_code for path in paths]

    assert asyncio.run(requests()) == [200, 404, 200]

    lines = [json.loads(line) for line in log_stream.getvalue().splitlines()]
    access = [line for line in lines if line["logger"] == "kflow.api.access"]
    assert [(a["method"], a["path"], a["route"], a["status"]) for a in access] == [
        ("GET", "/workflows/wf-1", "/workflows/{workflow_id}", 200),
        ("GET", "/nope", "unmatched", 404),
    ]
    assert all(a["level"] == "info" and a["duration_ms"] >= 0 for a in access)
    assert access[0]["message"].startswith("GET /workflows/wf-1 -> 200 in ")
