"""/healthz, /readyz and /metrics of a service's metrics port (kflow.observability.health)."""

from __future__ import annotations

import json
import os
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client import REGISTRY

from kflow.cli.run import service_command
from kflow.observability.health import Health, Outage, serve_health
from kflow.settings import Settings
from tests.readside.conftest import free_port
from tests.runtime.services import REPO


def get(url: str) -> tuple[int, str, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status, r.headers.get("Content-Type", ""), r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.headers.get("Content-Type", ""), e.read().decode()
    except OSError as e:  # not listening (yet)
        return 0, "", str(e)


@pytest.fixture
def served() -> Iterator[tuple[Health, str]]:
    health = Health("health-test")
    server = serve_health(free_port(), "127.0.0.1", health)
    try:
        yield health, f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()


def test_readiness_follows_the_reported_dependencies(served: tuple[Health, str]) -> None:
    health, base = served
    health.report("kafka", True)
    status, kind, body = get(f"{base}/readyz")
    assert (status, kind) == (200, "application/json")
    assert json.loads(body) == {
        "component": "health-test",
        "status": "ready",
        "checks": {"kafka": "ok"},
    }
    health.report("redis", False, "ConnectionError: connection refused")
    status, _, body = get(f"{base}/readyz")
    assert status == 503
    assert json.loads(body)["checks"]["redis"] == "ConnectionError: connection refused"
    assert get(f"{base}/healthz")[0] == 200  # not ready is still alive
    assert (
        REGISTRY.get_sample_value(
            "kflow_dependency_up", {"component": "health-test", "dependency": "redis"}
        )
        == 0
    )
    health.report("redis", True)
    assert get(f"{base}/readyz")[0] == 200


def test_a_failed_process_is_neither_alive_nor_ready(served: tuple[Health, str]) -> None:
    health, base = served
    health.fail("consumer fenced")
    status, _, body = get(f"{base}/healthz")
    assert status == 503 and json.loads(body)["status"] == "failed"
    status, _, body = get(f"{base}/readyz")
    assert status == 503 and json.loads(body)["failure"] == "consumer fenced"


def test_metrics_and_unknown_paths(served: tuple[Health, str]) -> None:
    _, base = served
    status, kind, body = get(f"{base}/metrics")
    assert status == 200 and kind.startswith("text/plain") and "# TYPE kflow_" in body
    status, _, body = get(f"{base}/nope")
    assert status == 404 and "/readyz" in json.loads(body)["error"]


def test_an_outage_backs_off_to_a_ceiling_and_recovers() -> None:
    health = Health("health-test")
    outage = Outage("postgres", health=health, base_s=0.1, ceiling_s=1.0)
    delays = [outage.failed(ConnectionError("down")) for _ in range(8)]
    assert delays[:4] == [0.1, 0.2, 0.4, 0.8] and max(delays) == 1.0
    assert not health.ready and outage.down
    outage.ok()
    assert health.ready and not outage.down
    assert outage.failed(ConnectionError("down again")) == 0.1  # a new outage starts over


@pytest.mark.integration
@pytest.mark.topics(partitions=1, queues=("default",))
def test_the_metrics_host_setting_chooses_the_address(
    isolated_settings: Settings, tmp_path: Path
) -> None:
    """KFLOW_METRICS_HOST (containers: 0.0.0.0) is where the probes listen; here 127.0.0.2."""
    port = free_port()
    env = {
        **os.environ,
        "KFLOW_TOPIC_PREFIX": isolated_settings.topic_prefix,
        "KFLOW_KAFKA_BOOTSTRAP": isolated_settings.kafka_bootstrap,
        "KFLOW_METRICS_HOST": "127.0.0.2",
    }
    args = ["run", "processor", "--queue", "default", "--metrics-port", str(port)]
    log = tmp_path / "processor.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(service_command(*args), env=env, cwd=REPO, stdout=out, stderr=out)
    try:
        deadline = time.monotonic() + 60  # a guard against hangs, not a speed assertion
        while get(f"http://127.0.0.2:{port}/readyz")[0] != 200:
            assert proc.poll() is None, log.read_text()[-2000:]
            assert time.monotonic() < deadline, "the processor never became ready"
            time.sleep(0.1)
        with pytest.raises(OSError):
            urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2)
    finally:
        proc.terminate()
        proc.wait(30)
