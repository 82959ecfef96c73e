"""Read endpoints over a projected log, and commands published to the commands topic."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest

from kflow.bus.contracts import decode, default_contracts
from kflow.bus.records import WorkflowDefinitionRecord
from kflow.core.inputs import CancelWorkflow, SignalWorkflow, StartWorkflow
from tests.kafka_helpers import consume_all, produce
from tests.readside.conftest import ApiServer, ReadSide, RunningProjector
from tests.readside.workload import PIPELINE, make_logs

pytestmark = pytest.mark.integration


@pytest.fixture
def seeded(
    readside: ReadSide, api: ApiServer, start_projector: Callable[[str], RunningProjector]
) -> tuple[ApiServer, RunningProjector]:
    logs = make_logs("wf", 7, tenant="acme")  # wf-000003 fails, the rest complete
    record = WorkflowDefinitionRecord(
        name=PIPELINE.name, version=1, definition=PIPELINE.to_dict(), registered_at=1
    )
    produce(
        readside.settings.kafka_bootstrap,
        f"{readside.settings.topic_prefix}.definitions",
        [(record.key, default_contracts().encode_definition(record))],
    )
    total = readside.produce(logs)
    projector = start_projector("postgres")
    projector.wait_applied(total + 1)
    return api, projector


def _client(api: ApiServer, token: str) -> httpx.Client:
    return httpx.Client(base_url=api.url, headers={"Authorization": f"Bearer {token}"}, timeout=15)


def test_list_filters_and_keyset_pagination(
    seeded: tuple[ApiServer, RunningProjector], make_key: Callable[..., str]
) -> None:
    with _client(seeded[0], make_key("acme", "read")) as c:
        ids: list[str] = []
        cursor: str | None = None
        pages = 0
        while True:
            params: dict[str, Any] = {"limit": 3} | ({"cursor": cursor} if cursor else {})
            page = c.get("/workflows", params=params).json()
            ids += [w["workflow_id"] for w in page["items"]]
            pages += 1
            cursor = page["next_cursor"]
            if cursor is None:
                break
        assert pages == 3
        assert ids == [f"wf-{i:06d}" for i in reversed(range(7))]  # newest first, no repeats
        failed = c.get("/workflows", params={"status": "failed"}).json()["items"]
        assert [w["workflow_id"] for w in failed] == ["wf-000003"]
        assert c.get("/workflows", params={"name": "other"}).json()["items"] == []
        later = c.get("/workflows", params={"created_after": "2027-01-15T08:00:04Z"}).json()
        assert [w["workflow_id"] for w in later["items"]] == ["wf-000006", "wf-000005", "wf-000004"]


def test_one_workflow_with_steps_and_its_events(
    seeded: tuple[ApiServer, RunningProjector], make_key: Callable[..., str]
) -> None:
    with _client(seeded[0], make_key("acme", "read")) as c:
        wf = c.get("/workflows/wf-000003").json()
        assert wf["status"] == "failed" and wf["input"] == {"n": "wf-000003"}
        steps = {s["node_id"]: s for s in wf["steps"]}
        assert steps["fetch"]["status"] == "succeeded"
        assert steps["store"]["status"] == "failed"
        assert steps["store"]["error"]["error_type"] == "Boom"
        page = c.get("/workflows/wf-000003/events", params={"limit": 5}).json()
        assert [e["seq"] for e in page["items"]] == [1, 2, 3, 4, 5]
        rest = c.get("/workflows/wf-000003/events", params={"after_seq": page["next_after_seq"]})
        assert [e["seq"] for e in rest.json()["items"]] == [6, 7, 8]
        assert rest.json()["items"][-1]["type"] == "WorkflowFailed"
        defs = c.get("/definitions").json()
        assert [(d["name"], d["version"]) for d in defs] == [(PIPELINE.name, 1)]


def test_commands_are_published_with_the_keys_identity(
    readside: ReadSide, seeded: tuple[ApiServer, RunningProjector], make_key: Callable[..., str]
) -> None:
    api = seeded[0]
    with _client(api, make_key("acme", "write")) as c:
        first = c.post(
            "/workflows", json={"name": PIPELINE.name, "input": {"x": 1}},
            headers={"Idempotency-Key": "order-42"},
        )  # fmt: skip
        again = c.post(
            "/workflows", json={"name": PIPELINE.name, "input": {"x": 1}},
            headers={"Idempotency-Key": "order-42"},
        )  # fmt: skip
        assert first.status_code == again.status_code == 202
        wf = first.json()["workflow_id"]
        assert again.json()["workflow_id"] == wf
        assert first.headers["location"] == f"/workflows/{wf}"
        cancel = c.post(
            "/workflows/wf-000001/cancel", json={"reason": "stop"},
            headers={"Idempotency-Key": "cancel-7"},
        )  # fmt: skip
        assert cancel.status_code == 202
        signal = c.post("/workflows/wf-000002/signals/store", json={"payload": {"approved": True}})
        assert signal.status_code == 202
        big = c.post("/workflows", json={"name": PIPELINE.name, "input": "x" * 20_000})
        assert big.status_code == 413
        unknown = c.post("/workflows", json={"name": "nope"})
        assert unknown.status_code == 422 and "version" in unknown.json()["detail"]
    records = consume_all(
        readside.settings.kafka_bootstrap, f"{readside.settings.topic_prefix}.commands",
        min_records=4,
    )  # fmt: skip
    envelopes = [decode(m.value() or b"") for m in records]
    starts = [e for e in envelopes if isinstance(e.body, StartWorkflow)]
    assert len(starts) == 2 and {s.workflow_id for s in starts} == {wf}
    body = starts[0].body
    assert isinstance(body, StartWorkflow)
    assert body.version == 1 and body.input == {"x": 1} and body.tenant == "acme"
    assert all(e.actor and e.actor.startswith("apikey:") and e.tenant == "acme" for e in envelopes)
    assert {type(e.body) for e in envelopes} == {StartWorkflow, CancelWorkflow, SignalWorkflow}
    # every command kind carries its Idempotency-Key to the orchestrator (ADR 0018)
    cancels = [e for e in envelopes if isinstance(e.body, CancelWorkflow)]
    assert [e.idempotency_key for e in cancels] == ["cancel-7"]


def test_health_readiness_and_metrics(
    seeded: tuple[ApiServer, RunningProjector], make_key: Callable[..., str]
) -> None:
    api = seeded[0]
    assert httpx.get(api.url + "/healthz").json() == {"status": "ok"}
    ready = httpx.get(api.url + "/readyz", timeout=15)
    assert ready.status_code == 200, ready.text
    assert ready.json()["checks"] == {"postgresql": "ok", "redis": "ok", "kafka": "ok"}
    with _client(api, make_key("acme", "read")) as c:
        c.get("/workflows")
    metrics = httpx.get(api.url + "/metrics").text
    assert 'kflow_api_requests_total{method="GET",route="/workflows",status="200"}' in metrics
    assert "kflow_projection_batch_seconds" in metrics
    assert 'kflow_queue_unserved{queue="default"} 0.0' in metrics  # nothing waits on it
