"""Hostile requests get a problem JSON naming what to fix, never a 500 or a plain-text
answer, and a 4xx keeps the keep-alive connection usable (issue 11, defect 7)."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from kflow.api.server import MAX_REQUEST_HEAD_BYTES
from kflow.bus.contracts import default_contracts
from kflow.bus.records import WorkflowDefinitionRecord
from tests.kafka_helpers import produce
from tests.readside.conftest import ApiServer, ReadSide, RunningProjector
from tests.readside.rawhttp import RawConnection, RawResponse
from tests.readside.workload import PIPELINE, make_logs

pytestmark = pytest.mark.integration

PROBLEM = "application/problem+json"


@pytest.fixture
def target(
    readside: ReadSide,
    api: ApiServer,
    start_projector: Callable[[str], RunningProjector],
    make_key: Callable[..., str],
) -> tuple[ApiServer, dict[str, str]]:
    """The API with a registered definition, one projected workflow and a write key."""
    record = WorkflowDefinitionRecord(
        name=PIPELINE.name, version=1, definition=PIPELINE.to_dict(), registered_at=1
    )
    produce(
        readside.settings.kafka_bootstrap,
        f"{readside.settings.topic_prefix}.definitions",
        [(record.key, default_contracts().encode_definition(record))],
    )
    start_projector("postgres").wait_applied(readside.produce(make_logs("hr", 1)) + 1)
    token = make_key("default", "read", "write")
    return api, {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}


def _still_open(conn: RawConnection) -> None:
    """The same connection answers the next request."""
    assert conn.request("GET", "/healthz").status == 200


def _problem(response: RawResponse, status: int) -> str:
    assert response.status == status, response.body[:300]
    assert response.headers["content-type"] == PROBLEM
    body = response.json()
    assert body["status"] == status and body["type"].startswith("https://kflow.dev/problems/")
    detail: str = body["detail"]
    return detail


START = f'{{"name": "{PIPELINE.name}", "input": %s}}'
SIGNAL = '{"payload": %s}'


@pytest.mark.parametrize(
    ("path", "template", "document", "field"),
    [
        ("/workflows", START, "NaN", "input"),
        ("/workflows", START, "Infinity", "input"),
        ("/workflows", START, '{"a": [1, -Infinity]}', "input.a[1]"),
        ("/workflows", START, "1e400", "input"),
        ("/workflows", START, '"\\ud800"', "input"),
        ("/workflows", START, '{"ok": "\\ud83d\\ude00", "bad": ["x\\udc00"]}', "input.bad[0]"),
        ("/workflows", START, '{"\\ud800": 1}', 'input["\\ud800"]'),
        ("/workflows/hr-000000/signals/review", SIGNAL, "NaN", "payload"),
        ("/workflows/hr-000000/signals/review", SIGNAL, '{"by": "\\udfff"}', "payload.by"),
    ],
)
def test_a_document_that_is_not_ijson_is_a_422_naming_the_field(
    target: tuple[ApiServer, dict[str, str]], path: str, template: str, document: str, field: str
) -> None:
    api, headers = target
    with RawConnection(api.url) as conn:
        response = conn.request("POST", path, headers, (template % document).encode())
        detail = _problem(response, 422)
        assert detail.startswith(f"{field}: "), detail
        assert response.json()["errors"][0]["field"] == field
        _still_open(conn)
        ok = conn.request("POST", path, headers, (template % '{"fine": [1, "é", 2.5]}').encode())
        assert ok.status == 202, ok.body


@pytest.mark.parametrize(
    "body",
    [
        f'{{"name": "{PIPELINE.name}", "version": NaN}}',
        f'{{"name": "{PIPELINE.name}", "workflow_id": "\\ud800"}}',
        '{"name": "\\ud800"}',
        "[1e400]",
        "{",
    ],
)
def test_other_bad_start_bodies_are_422_and_keep_the_connection(
    target: tuple[ApiServer, dict[str, str]], body: str
) -> None:
    api, headers = target
    with RawConnection(api.url) as conn:
        _problem(conn.request("POST", "/workflows", headers, body.encode()), 422)
        _still_open(conn)


@pytest.mark.parametrize("body", ['{"reason": "\\ud800"}', '{"reason": NaN}', "[Infinity]"])
@pytest.mark.parametrize("command", ["cancel", "pause"])
def test_bad_reasons_are_422(
    target: tuple[ApiServer, dict[str, str]], command: str, body: str
) -> None:
    api, headers = target
    with RawConnection(api.url) as conn:
        path = f"/workflows/hr-000000/{command}"
        _problem(conn.request("POST", path, headers, body.encode()), 422)
        _still_open(conn)


def test_a_100_kb_authorization_header_is_a_431_problem(
    target: tuple[ApiServer, dict[str, str]],
) -> None:
    api, _ = target
    with RawConnection(api.url) as conn:
        huge = {"Authorization": "Bearer " + "x" * 100_000}
        detail = _problem(conn.request("GET", "/workflows", huge), 431)
        assert detail.startswith("Authorization: ") and str(MAX_REQUEST_HEAD_BYTES) in detail
    with RawConnection(api.url) as conn:
        long_url = "/workflows?cursor=" + "a" * 40_000
        assert "shorter URL" in _problem(conn.request("GET", long_url), 414)
    with RawConnection(api.url) as conn:  # a head still arriving when over the limit: h11's check
        conn.sock.sendall(b"GET /workflows HTTP/1.1\r\nHost: x\r\nCookie: " + b"c" * 40_000)
        assert _problem(conn.read_response(), 431).startswith("Cookie: ")
    with RawConnection(api.url) as conn:
        conn.sock.sendall(b"GET /workflows HTTP/1.1\r\nHost: x\r\nbad header line\r\n\r\n")
        assert "not valid HTTP" in _problem(conn.read_response(), 400)


def test_a_last_event_id_that_is_not_a_number_is_a_400(
    target: tuple[ApiServer, dict[str, str]],
) -> None:
    api, headers = target
    with RawConnection(api.url) as conn:
        for value in ("\xb2", "null", "99999999999999999999"):  # '²'.isdigit() is True
            sent = {**headers, "Last-Event-ID": value}
            detail = _problem(conn.request("GET", "/workflows/hr-000000/stream", sent), 400)
            assert "Last-Event-ID" in detail
        _still_open(conn)


def test_a_body_over_the_limit_is_a_413_problem_before_it_is_parsed(
    target: tuple[ApiServer, dict[str, str]],
) -> None:
    api, headers = target
    limit = api.config.max_body_bytes
    body = (START % f'"{"x" * limit}"').encode()
    with RawConnection(api.url) as conn:
        detail = _problem(conn.request("POST", "/workflows", headers, body), 413)
        assert detail.startswith("request body: ") and str(limit) in detail
    with RawConnection(api.url) as conn:  # chunked: no Content-Length to refuse at once
        head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        start = "POST /workflows HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
        conn.sock.sendall(f"{start}{head}\r\n".encode())
        chunk = b"x" * 65_536
        for _ in range(limit // len(chunk) + 1):
            conn.sock.sendall(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
        conn.sock.sendall(b"0\r\n\r\n")
        assert _problem(conn.read_response(), 413).startswith("request body: ")


def test_an_unexpected_error_is_a_500_problem_and_the_connection_stays(api: ApiServer) -> None:
    """No request is known to crash a handler; this route stands for the next one found."""

    async def crash() -> None:
        raise RuntimeError("a bug")

    api.app.add_api_route("/test-crash", crash)
    with RawConnection(api.url) as conn:
        assert "has been logged" in _problem(conn.request("GET", "/test-crash"), 500)
        _still_open(conn)
