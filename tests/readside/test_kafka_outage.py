"""Kafka stopped: commands answer 503 problem JSON within the command timeout, /readyz names
Kafka, and once the broker is back a start is accepted (202) and lands in the log.

Uses a dedicated broker on its own ports and data dir: stopping the shared one would
break other tests running at the same time. PostgreSQL and Redis are the shared ones.
"""

from __future__ import annotations

import httpx
import pytest

from kflow.api.apikeys import Scope, create_key
from kflow.bus.admin import create_topics
from kflow.bus.contracts import decode
from kflow.bus.topics import topic_specs
from kflow.core.inputs import StartWorkflow
from tests.kafka_helpers import consume_all
from tests.readside.conftest import ApiServer, ReadSide, RunningProjector, wait_until
from tests.readside.dedicated import DedicatedKafka
from tests.readside.workload import PIPELINE, make_logs

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture
def on_dedicated_kafka(
    readside: ReadSide, private_kafka: DedicatedKafka
) -> tuple[ReadSide, DedicatedKafka]:
    """The test's schema and Redis prefix, with its topics on a broker of its own."""
    settings = readside.settings.model_copy(update={"kafka_bootstrap": private_kafka.bootstrap})
    create_topics(private_kafka.bootstrap, topic_specs(settings.topic_prefix, 2, ()))
    return ReadSide(settings), private_kafka


def _kafka_problem(r: httpx.Response) -> None:
    assert r.status_code == 503, (r.status_code, r.text)
    assert r.headers["content-type"] == "application/problem+json"
    assert int(r.headers["retry-after"]) > 0
    body = r.json()
    assert body["type"].endswith("/dependency-unavailable") and body["status"] == 503
    assert body["dependency"] == "Kafka" and "Idempotency-Key" in body["detail"]
    assert body["instance"] == r.request.url.path


def test_kafka_down_gives_503_then_202_when_back(
    on_dedicated_kafka: tuple[ReadSide, DedicatedKafka],
) -> None:
    readside, broker = on_dedicated_kafka
    logs = make_logs("k", 1)  # k-000000: a projected workflow to cancel
    projector = RunningProjector(readside, "postgres")
    try:
        projector.wait_applied(readside.produce(logs))
    finally:
        projector.close()
    with readside.connect() as conn:
        token = create_key(conn, "t", "default", [Scope.WRITE]).token
    api = ApiServer(readside)
    try:
        with httpx.Client(
            base_url=api.url, headers={"Authorization": f"Bearer {token}"}, timeout=30
        ) as c:

            def start(workflow_id: str) -> httpx.Response:
                body = {"name": PIPELINE.name, "version": 1, "workflow_id": workflow_id}
                return c.post("/workflows", json=body)

            assert start("before").status_code == 202
            broker.stop()

            _kafka_problem(start("during"))
            _kafka_problem(c.post("/workflows/k-000000/cancel", json={"reason": "x"}))
            ready = c.get("/readyz")
            assert ready.status_code == 503
            checks = ready.json()["checks"]
            assert checks["kafka"].startswith("unavailable")
            assert checks["postgresql"] == checks["redis"] == "ok"

            broker.start()
            accepted: list[str] = []

            def start_accepted() -> bool:  # a client retrying after Retry-After
                r = start("after")
                if r.status_code == 202:
                    accepted.append(r.json()["workflow_id"])
                    return True
                _kafka_problem(r)  # while the producer reconnects: still a clean 503
                return False

            wait_until(start_accepted, "POST /workflows to be accepted again")
            assert accepted == ["after"]
            assert c.get("/readyz").status_code == 200
    finally:
        api.close()
    records = consume_all(
        broker.bootstrap, f"{readside.settings.topic_prefix}.commands", min_records=2
    )
    starts = [decode(m.value() or b"").body for m in records]
    ids = [s.workflow_id for s in starts if isinstance(s, StartWorkflow)]
    assert "before" in ids and "after" in ids
