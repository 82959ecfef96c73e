"""The workflow commands report the orchestrator's answer, not just delivery (issue 11, defect 9).

A command Kafka took may still be refused: the CLI waits (bounded) for the answer, prints
success only when the orchestrator applied it, and exits non-zero with the reason otherwise.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from typer.testing import CliRunner

from kflow.cli.main import _register, app
from kflow.settings import Settings, get_settings
from tests.runtime.conftest import Runtime

pytestmark = pytest.mark.integration

_register()
runner = CliRunner()


def echo(node_id: str, **extra: Any) -> dict[str, Any]:
    return {"id": node_id, "type": "echo", "queue": "default", **extra}


GATED = {
    "name": "gated",
    "nodes": [echo("prepare"), {"id": "gate", "type": "approval", "depends_on": ["prepare"]}],
}


@pytest.fixture
def cli_env(isolated_settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Iterator[Settings]:
    monkeypatch.setenv("KFLOW_TOPIC_PREFIX", isolated_settings.topic_prefix)
    get_settings.cache_clear()
    yield isolated_settings
    get_settings.cache_clear()


def test_starting_an_unknown_definition_fails_with_the_reason(
    runtime: Runtime, cli_env: Settings
) -> None:
    result = runner.invoke(app, ["start", "nosuchflow", "--id", "cli-nosuch"])
    assert result.exit_code == 1, result.output
    assert "started" not in result.stdout
    assert "unknown_definition" in result.output and "nosuchflow" in result.output


def test_start_reports_started_and_a_duplicate_start(runtime: Runtime, cli_env: Settings) -> None:
    runtime.apply({"name": "one", "nodes": [echo("a")]})
    first = runner.invoke(app, ["start", "one", "--id", "cli-one"])
    assert first.exit_code == 0, first.output
    assert first.stdout.strip() == "started cli-one"
    again = runner.invoke(app, ["start", "one", "--id", "cli-one"])
    assert again.exit_code == 0, again.output
    assert not again.stdout.startswith("started") and "already exists" in again.stdout


def test_commands_on_a_finished_workflow_fail_with_the_reason(
    runtime: Runtime, cli_env: Settings
) -> None:
    runtime.apply({"name": "one", "nodes": [echo("a")]})
    runtime.wait_final([runtime.start("one", workflow_id="cli-done")])
    for command in (
        ["pause", "cli-done"],
        ["resume", "cli-done"],
        ["cancel", "cli-done"],
        ["signal", "cli-done", "a"],
    ):
        result = runner.invoke(app, command)
        assert result.exit_code == 1, (command, result.output)
        assert "requested" not in result.stdout and "signalled" not in result.stdout, command
        assert "workflow_finished" in result.output, (command, result.output)
        assert "completed" in result.output, (command, result.output)


def test_pause_resume_signal_and_cancel_report_what_was_applied(
    runtime: Runtime, cli_env: Settings
) -> None:
    runtime.apply(GATED)
    wid = runtime.start("gated", workflow_id="cli-gated")
    runtime.wait_for(wid, "StepScheduled")
    paused = runner.invoke(app, ["pause", wid, "--reason", "vendor"])
    assert paused.exit_code == 0, paused.output
    assert paused.stdout.strip() == f"paused {wid}"
    twice = runner.invoke(app, ["pause", wid])
    assert twice.exit_code == 1 and "already paused" in twice.output
    resumed = runner.invoke(app, ["resume", wid])
    assert resumed.exit_code == 0 and resumed.stdout.strip() == f"resumed {wid}"
    runtime.wait_for(wid, "WorkflowResumed")
    wrong = runner.invoke(app, ["signal", wid, "prepare"])
    assert wrong.exit_code == 1 and "no_waiting_step" in wrong.output
    cancelled = runner.invoke(app, ["cancel", wid])
    assert cancelled.exit_code == 0 and cancelled.stdout.strip() == f"cancelled {wid}"


def test_unknown_workflow_and_no_wait(runtime: Runtime, cli_env: Settings) -> None:
    unknown = runner.invoke(app, ["cancel", "never-there"])
    assert unknown.exit_code == 1 and "unknown_workflow" in unknown.output
    sent = runner.invoke(app, ["cancel", "never-there", "--no-wait"])
    assert sent.exit_code == 0, sent.output
    assert sent.stdout.strip() == "cancel sent for never-there (not waiting for the answer)"


def test_no_orchestrator_is_a_bounded_wait_and_not_a_success(cli_env: Settings) -> None:
    result = runner.invoke(app, ["start", "whatever", "--id", "cli-alone", "--timeout", "1"])
    assert result.exit_code == 3, result.output
    assert "started" not in result.stdout
    assert "no answer from the orchestrator within 1 s" in result.output


def test_a_retried_command_with_its_idempotency_key_is_applied_once(
    runtime: Runtime, cli_env: Settings
) -> None:
    runtime.apply(GATED)
    wid = runtime.start("gated", workflow_id="cli-keyed")
    runtime.wait_for(wid, "StepScheduled")
    first = runner.invoke(app, ["pause", wid, "--idempotency-key", "ops-1"])
    assert first.exit_code == 0 and first.stdout.strip() == f"paused {wid}", first.output
    assert runner.invoke(app, ["resume", wid]).exit_code == 0
    retried = runner.invoke(app, ["pause", wid, "--idempotency-key", "ops-1"])
    assert retried.exit_code == 0, retried.output
    assert "already" in retried.stdout and "not applied again" in retried.stdout
    events = runtime.wait_for(wid, "WorkflowResumed")
    assert [type(e).__name__ for e in events].count("WorkflowPaused") == 1
    started = runner.invoke(app, ["start", "gated", "--idempotency-key", "order-9"])
    again = runner.invoke(app, ["start", "gated", "--idempotency-key", "order-9"])
    assert started.exit_code == again.exit_code == 0, (started.output, again.output)
    assert started.stdout.startswith("started ") and "already exists" in again.stdout
