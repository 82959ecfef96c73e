"""A broker restart keeps committed records (a dedicated broker, so the shared one is untouched)."""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka import Producer

from services.bus.admin import create_topics
from services.bus.topics import TopicSpec
from services.stack import REPO_ROOT
from tests.kafka_helpers import consume_all, values
from tests.readside.dedicated import free_port_pair

pytestmark = [pytest.mark.integration, pytest.mark.slow]

KAFKA_SH = REPO_ROOT / "deploy" / "local" / "kafka.sh"


class DedicatedBroker:
    """Runs ``kafka.sh`` with its own KFLOW_HOME and ports."""

    def __init__(self, home: Path, port: int) -> None:
        self.bootstrap = f"127.0.0.1:{port}"
        self.env = {
            **os.environ,
            "KFLOW_HOME": str(home),
            "KFLOW_KAFKA_PORT": str(port),
            "KFLOW_KAFKA_CONTROLLER_PORT": str(port + 1),
            "KFLOW_KAFKA_HEAP": "384m",
        }
        self.data = home / "kafka" / "data"

    def run(self, command: str) -> str:
        result = subprocess.run(
            ["bash", str(KAFKA_SH), command],
            env=self.env,
            capture_output=True,
            text=True,
            check=False,
        )
        assert result.returncode == 0, f"kafka.sh {command}: {result.stdout}{result.stderr}"
        return result.stdout


@pytest.fixture
def broker(tmp_path: Path, stack: object) -> Iterator[DedicatedBroker]:
    b = DedicatedBroker(tmp_path, free_port_pair())
    b.run("up")
    yield b
    b.run("down")


def test_committed_records_survive_a_restart(broker: DedicatedBroker) -> None:
    topic = f"restart-{uuid.uuid4().hex[:8]}"
    create_topics(broker.bootstrap, [TopicSpec(topic, 2)])
    producer = Producer(
        {"bootstrap.servers": broker.bootstrap, "transactional.id": f"t-{uuid.uuid4().hex}"}
    )
    producer.init_transactions(30)
    producer.begin_transaction()
    for i in range(20):
        producer.produce(topic, key=f"wf-{i % 4}".encode(), value=str(i).encode())
    producer.commit_transaction(30)
    cluster_id = (broker.data / "meta.properties").read_text()

    assert "stopped" in broker.run("down")
    assert "not running" in broker.run("down")  # idempotent
    broker.run("up")
    assert "already running" in broker.run("up")  # idempotent

    assert (broker.data / "meta.properties").read_text() == cluster_id  # not re-formatted
    got = values(consume_all(broker.bootstrap, topic, timeout_s=60))
    assert sorted(int(v) for v in got) == list(range(20))
