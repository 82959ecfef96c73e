"""Issue 11 defect 4: a fatal Kafka client error ends the process non-zero, never an idle one.

The fatal path is real: a second processor with the same ``--instance`` (static
``group.instance.id``) joins, and the broker fences the first, whose librdkafka reports
``FATAL ... Static consumer fenced by other consumer with same group.instance.id``.
"""

from __future__ import annotations

import os
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from kflow.cli.run import FATAL_EXIT, service_command
from kflow.settings import Settings
from tests.readside.conftest import free_port
from tests.runtime.services import REPO

pytestmark = [pytest.mark.integration, pytest.mark.topics(partitions=2, queues=("default",))]

WAIT_S = 90.0  # a guard against hangs, not a speed assertion


def status_of(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=3) as response:
            return int(response.status)
    except urllib.error.HTTPError as e:
        return e.code
    except OSError:
        return 0


@pytest.fixture
def start(isolated_settings: Settings, redis_prefix: str, tmp_path: Path) -> Iterator[object]:
    procs: list[subprocess.Popen[bytes]] = []
    env = {
        **os.environ,
        "KFLOW_TOPIC_PREFIX": isolated_settings.topic_prefix,
        "KFLOW_KAFKA_BOOTSTRAP": isolated_settings.kafka_bootstrap,
        "KFLOW_REDIS_URL": isolated_settings.redis_url,
        "KFLOW_PARTITIONS": "2",
        "KFLOW_REDIS_PREFIX": redis_prefix,
        "KFLOW_PROJECTOR_INSTANCE": "same-slot",
    }

    def run(name: str, *args: str) -> subprocess.Popen[bytes]:
        with (tmp_path / f"{name}.log").open("ab") as log:
            proc = subprocess.Popen(
                service_command(*args), env=env, cwd=REPO, stdout=log, stderr=log
            )
        procs.append(proc)
        return proc

    yield run
    for proc in procs:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@pytest.mark.parametrize(
    "args",
    [
        ["run", "processor", "--queue", "default", "--instance", "same-slot"],
        ["run", "orchestrator", "--instance", "same-slot"],
        ["run", "projector", "--target", "redis"],  # KFLOW_PROJECTOR_INSTANCE=same-slot
    ],
    ids=["processor", "orchestrator", "projector"],
)
def test_a_fenced_static_member_exits_non_zero(
    start: object, tmp_path: Path, args: list[str]
) -> None:
    port = free_port()
    first = start("first", *args, "--log-level", "info", "--metrics-port", str(port))  # type: ignore[operator]
    deadline = time.monotonic() + WAIT_S
    while status_of(f"http://127.0.0.1:{port}/readyz") != 200:
        assert first.poll() is None, (tmp_path / "first.log").read_text()[-2000:]
        assert time.monotonic() < deadline, "the first processor never became ready"
        time.sleep(0.1)
    assert status_of(f"http://127.0.0.1:{port}/healthz") == 200

    second = start("second", *args)  # type: ignore[operator]
    try:
        code = first.wait(WAIT_S)
    except subprocess.TimeoutExpired:
        pytest.fail(
            f"the fenced {args[1]} stayed alive doing nothing:\n"
            + (tmp_path / "first.log").read_text()[-2000:]
        )
    log = (tmp_path / "first.log").read_text()
    assert code == FATAL_EXIT, log[-2000:]
    assert "fenced" in log and "same-slot" in log, log[-2000:]
    assert second.poll() is None, "the process that took the slot over must keep running"
