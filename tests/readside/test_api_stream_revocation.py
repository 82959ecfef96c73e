"""Revoking an API key with ``kflow apikey revoke`` ends the streams already open with it:
the JSON API's SSE stream and both live streams of the console (issue 11, defect 5)."""

from __future__ import annotations

import json
import os
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import psycopg
import pytest
from psycopg import sql

from kflow.api.apikeys import REVOKED_CHANNEL, parse_key_id
from kflow.api.console.session import COOKIE
from kflow.cli.run import service_command
from tests.kafka_helpers import produce
from tests.readside.conftest import ApiServer, ReadSide, RunningProjector
from tests.readside.workload import encode, run_workflow

pytestmark = pytest.mark.integration

STILL_OPEN_S = 20.0
"""Hang guard only: a stream still open this long after the revocation is the bug."""


def revoke_with_cli(readside: ReadSide, token: str) -> float:
    """``kflow apikey revoke <id>`` in its own process, as an operator runs it; returns when
    this process heard PostgreSQL's revocation notice (about the commit's time), the start
    of the latency the tests print."""
    key_id = parse_key_id(token)
    assert key_id is not None
    heard: list[float] = []
    with psycopg.connect(readside.dsn, autocommit=True) as listener:
        listener.execute(sql.SQL("LISTEN {}").format(sql.Identifier(REVOKED_CHANNEL)))

        def hear() -> None:
            for note in listener.notifies(timeout=60, stop_after=1):
                if note.payload == key_id:
                    heard.append(time.time())

        thread = threading.Thread(target=hear, daemon=True)
        thread.start()
        env = {
            **os.environ,
            "KFLOW_DATABASE_URL": readside.dsn,
            "KFLOW_DB_SCHEMA": readside.schema,
            # the revocation is also published to this test's principals topic (ADR 0060)
            "KFLOW_TOPIC_PREFIX": readside.settings.topic_prefix,
            "KFLOW_KAFKA_BOOTSTRAP": readside.settings.kafka_bootstrap,
        }
        done = subprocess.run(
            service_command("apikey", "revoke", key_id),
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        assert f"revoked {key_id}" in done.stdout
        thread.join(60)
    assert heard, "no revocation notice"
    return heard[0]


def messages(response: httpx.Response) -> Iterator[tuple[str, str]]:
    """``(event, data)`` of each SSE message (with or without an id) until the stream ends;
    fails if it is still open ``STILL_OPEN_S`` after this generator was last resumed."""
    fields: dict[str, str] = {}
    resumed = time.monotonic()
    for line in response.iter_lines():
        if time.monotonic() - resumed > STILL_OPEN_S:
            raise AssertionError(f"the stream is still open after {STILL_OPEN_S} s")
        if not line:
            if "data" in fields:
                yield fields.get("event", "message"), fields["data"]
                resumed = time.monotonic()
            fields = {}
            continue
        if line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        fields[name] = value.removeprefix(" ")


def ends_unauthorized(stream: Iterator[tuple[str, str]], since: float) -> dict[str, Any]:
    """Read to the end: the last message is ``unauthorized`` with a 401 problem. Prints how
    long after ``since`` (the revocation's commit) it came: a figure, not an assertion."""
    seen = list(stream)
    print(f"stream ended {1000 * (time.time() - since):.0f} ms after the revocation")
    assert seen, "the stream ended without saying why"
    event, data = seen[-1]
    assert event == "unauthorized", seen
    problem: dict[str, Any] = json.loads(data)
    assert problem["status"] == 401 and "revoked" in problem["detail"]
    return problem


@pytest.fixture
def running(
    readside: ReadSide, start_projector: Callable[[str], RunningProjector]
) -> Callable[[int, int], str]:
    """A workflow half way through (no terminal event), projected to PostgreSQL and Redis;
    call the fixture to publish more of its events."""
    wlog = run_workflow("rv-1", 1_800_000_000_000, tenant="acme")
    start_projector("redis")
    pg = start_projector("postgres")

    def publish(lo: int, hi: int) -> str:
        records = [(wlog.workflow_id, encode(wlog, e)) for e in wlog.events[lo:hi]]
        topic = f"{readside.settings.topic_prefix}.events"
        produce(readside.settings.kafka_bootstrap, topic, records)
        pg.wait_applied(hi)
        return wlog.workflow_id

    publish(0, 3)
    return publish


def test_api_stream_ends_when_its_key_is_revoked(
    readside: ReadSide,
    api: ApiServer,
    running: Callable[[int, int], str],
    make_key: Callable[..., str],
) -> None:
    workflow_id = running(3, 3)
    token, other = make_key("acme", "read"), make_key("acme", "read")
    url = f"{api.url}/workflows/{workflow_id}/stream"
    with (
        httpx.stream("GET", url, headers={"Authorization": f"Bearer {token}"}, timeout=30) as r,
        httpx.stream("GET", url, headers={"Authorization": f"Bearer {other}"}, timeout=30) as o,
    ):
        assert r.status_code == 200 and o.status_code == 200
        stream, untouched = messages(r), messages(o)
        assert [next(stream)[0] for _ in range(3)] == [next(untouched)[0] for _ in range(3)]
        revoked = revoke_with_cli(readside, token)
        problem = ends_unauthorized(stream, revoked)
        assert problem["instance"] == f"/workflows/{workflow_id}/stream"
        running(3, 5)  # the other key's stream goes on
        assert [json.loads(next(untouched)[1])["seq"] for _ in range(2)] == [4, 5]
    again = httpx.get(url, headers={"Authorization": f"Bearer {token}"}, timeout=10)
    assert again.status_code == 401


def test_console_streams_end_when_their_key_is_revoked(
    readside: ReadSide,
    api: ApiServer,
    running: Callable[[int, int], str],
    make_key: Callable[..., str],
) -> None:
    workflow_id = running(3, 3)
    token = make_key("acme", "read")
    cookies = {COOKIE: token}
    with (
        httpx.stream("GET", f"{api.url}/ui/live/workflows", cookies=cookies, timeout=30) as lst,
        httpx.stream(
            "GET", f"{api.url}/ui/workflows/{workflow_id}/stream", cookies=cookies, timeout=30
        ) as one,
    ):
        assert lst.status_code == 200 and one.status_code == 200
        run_stream = messages(one)
        assert [next(run_stream)[0] for _ in range(3)][:1] == ["WorkflowStarted"]
        revoked = revoke_with_cli(readside, token)
        ends_unauthorized(run_stream, revoked)
        ends_unauthorized(messages(lst), revoked)
