"""A step on a queue nobody serves is reported, and `kflow run all` serves the applied queues
(issue 11, defect 11).

A node ``type: echo`` with no ``queue`` goes to queue ``echo``; a runtime that serves only
``default`` leaves the step waiting. That must be visible (``kflow status``, a metric), and
``kflow run all`` with no arguments must serve every queue the applied definitions use.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client import REGISTRY
from typer.testing import CliRunner

import kflow
from kflow.cli.main import _register, app
from kflow.cli.run import service_command
from kflow.observability.queues import QueueWatch
from kflow.settings import Settings, get_settings
from tests.runtime.conftest import WAIT_S, Runtime

pytestmark = pytest.mark.integration

_register()
runner = CliRunner()
REPO = Path(__file__).resolve().parents[2]
NEWCOMER = {"name": "newcomer", "nodes": [{"id": "hello", "type": "echo", "input": {"x": 1}}]}
# served by another team's processor, whose node code `run all` does not have
FOREIGN = {"name": "foreign", "nodes": [{"id": "x", "type": "team.only", "queue": "team"}]}


@pytest.fixture
def cli_env(isolated_settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Iterator[Settings]:
    monkeypatch.setenv("KFLOW_TOPIC_PREFIX", isolated_settings.topic_prefix)
    get_settings.cache_clear()
    yield isolated_settings
    get_settings.cache_clear()


def _gauge(name: str, queue: str) -> float | None:
    return REGISTRY.get_sample_value(name, {"queue": queue})


def _until(check: object, what: str) -> None:
    deadline = time.monotonic() + WAIT_S  # a hang guard, not a speed assertion
    while not check():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        time.sleep(0.3)


def test_a_step_on_a_queue_no_processor_serves_is_reported(
    runtime: Runtime, cli_env: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    runtime.apply(NEWCOMER)
    wid = runtime.start("newcomer")
    scheduled = runtime.wait_for(wid, "StepScheduled")[-1]
    assert getattr(scheduled, "queue", None) == "echo"

    status = runner.invoke(app, ["status"])
    assert status.exit_code == 1, status.output
    assert "no processor serves queue 'echo': 1 task(s) waiting" in status.output
    assert "kflow run processor --queue echo" in status.output
    watch = QueueWatch(runtime.settings.kafka_bootstrap, runtime.prefix)
    with caplog.at_level(logging.WARNING, logger="kflow.observability.queues"):
        unserved = {s.queue for s in watch.check() if s.unserved}
        watch.check()  # still unserved: warned once per change, not per refresh
    assert unserved == {"echo"}  # default is served (and idle): not reported
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warned) == 1 and "no processor serves queue 'echo'" in warned[0]
    assert _gauge("kflow_queue_unserved", "echo") == 1
    assert _gauge("kflow_queue_waiting_tasks", "echo") == 1
    assert _gauge("kflow_queue_unserved", "default") == 0

    runtime.start_processor("echo")
    runtime.wait_final([wid])
    _until(lambda: runner.invoke(app, ["status"]).exit_code == 0, "kflow status to be clean")
    statuses = {s.queue: s for s in watch.check()}
    assert statuses["echo"].waiting == 0 and statuses["echo"].processors == 1
    assert _gauge("kflow_queue_unserved", "echo") == 0


def test_run_all_without_arguments_serves_the_queues_of_the_applied_definitions(
    runtime_factory: Runtime, tmp_path: Path
) -> None:
    runtime_factory.apply(NEWCOMER)
    runtime_factory.apply(FOREIGN)
    settings = runtime_factory.settings
    env = {**os.environ, "KFLOW_TOPIC_PREFIX": settings.topic_prefix, "KFLOW_PARTITIONS": "2"}
    with (tmp_path / "run-all.log").open("wb") as log:
        proc = subprocess.Popen(
            service_command("run", "all"), env=env, cwd=REPO, stdout=log, stderr=log
        )
    try:
        with kflow.Client(settings, actor="test") as client:
            output = client.start("newcomer").result(timeout=WAIT_S)
        assert output == {"hello": {"x": 1}}
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)
    printed = (tmp_path / "run-all.log").read_text()
    assert "serving queues default, echo;" in printed, printed
    # a processor without team.only would take the queue's partitions and fail its steps
    assert (
        "queue 'team' of the applied definitions is not served: no --nodes module registers "
        "node type team.only" in " ".join(printed.split())
    ), printed
