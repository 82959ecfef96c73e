"""The workflow CLI commands: help with examples, one-line errors, a real round trip."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from kflow.cli.main import _register, app
from kflow.core.events import event_to_dict
from kflow.settings import Settings, get_settings
from tests.runtime.conftest import Runtime

_register()
runner = CliRunner()


def echo(node_id: str, type: str = "echo", **extra: Any) -> dict[str, Any]:
    return {"id": node_id, "type": type, "queue": "default", **extra}


@pytest.fixture
def cli_env(isolated_settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Iterator[Settings]:
    monkeypatch.setenv("KFLOW_TOPIC_PREFIX", isolated_settings.topic_prefix)
    get_settings.cache_clear()
    yield isolated_settings
    get_settings.cache_clear()


@pytest.mark.parametrize(
    "command",
    [
        ["start"],
        ["signal"],
        ["pause"],
        ["resume"],
        ["cancel"],
        ["events"],
        ["status"],
        ["definitions", "apply"],
        ["run", "orchestrator"],
        ["run", "processor"],
        ["run", "all"],
    ],
)
def test_every_command_has_help_with_an_example(command: list[str]) -> None:
    result = runner.invoke(app, [*command, "--help"])
    assert result.exit_code == 0
    assert "Example: kflow" in result.output


def test_bad_json_is_one_line_naming_the_option() -> None:
    result = runner.invoke(app, ["start", "docpipe", "--input", "{nope"])
    assert result.exit_code == 2
    assert result.output.strip().startswith("error: --input is not valid JSON")
    assert "Traceback" not in result.output


def test_broker_down_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KFLOW_KAFKA_BOOTSTRAP", "127.0.0.1:1")
    get_settings.cache_clear()
    try:
        result = runner.invoke(app, ["cancel", "some-id"])
    finally:
        get_settings.cache_clear()
    assert result.exit_code == 1
    (line,) = result.output.strip().splitlines()
    assert line.startswith("error: Kafka is not reachable at 127.0.0.1:1")
    assert "start it with `kflow dev up` or set KFLOW_KAFKA_BOOTSTRAP" in line


def test_invalid_definition_file_names_the_problem(tmp_path: Path, cli_env: Settings) -> None:
    path = tmp_path / "cyclic.yaml"
    path.write_text(
        "name: loop\nnodes:\n"
        "  - {id: a, type: echo, depends_on: [b]}\n  - {id: b, type: echo, depends_on: [a]}\n"
    )
    result = runner.invoke(app, ["definitions", "apply", str(path)])
    assert result.exit_code == 2
    assert "cycl" in result.output.lower() and "Traceback" not in result.output


@pytest.mark.integration
def test_apply_start_and_read_events_of_an_unknown_workflow(cli_env: Settings) -> None:
    applied = runner.invoke(app, ["definitions", "apply", "examples/docpipe/docpipe.yaml"])
    assert applied.exit_code == 0, applied.output
    assert "applied docpipe@1" in applied.output
    listed = runner.invoke(app, ["definitions", "list"])
    assert "docpipe" in listed.output
    sent = runner.invoke(app, ["start", "nope", "--id", "cli-unknown", "--no-wait"])
    assert sent.exit_code == 0 and "start sent for cli-unknown" in sent.output
    missing = runner.invoke(app, ["events", "never-started"])
    assert missing.exit_code == 1
    assert "no events for workflow 'never-started'" in missing.output


@pytest.mark.integration
def test_start_wait_follows_to_the_end_and_events_prints_the_log(
    runtime: Runtime, cli_env: Settings
) -> None:
    runtime.apply({"name": "pair", "nodes": [echo("a"), echo("b", depends_on=["a"])]})
    runtime.apply({"name": "bad", "nodes": [echo("x", type="test.fail")]})
    done = runner.invoke(app, ["start", "pair", "--id", "cli-pair", "--wait"])
    assert done.exit_code == 0, done.output
    assert "started cli-pair" in done.output
    assert done.stdout.strip().splitlines()[-1].startswith("WorkflowCompleted {")
    printed = runner.invoke(app, ["events", "cli-pair", "--json"])
    assert printed.exit_code == 0, printed.output
    logged = runtime.wait_final(["cli-pair"])["cli-pair"]
    assert [json.loads(line) for line in printed.output.splitlines()] == [
        event_to_dict(e) for e in logged
    ]
    followed = runner.invoke(app, ["events", "cli-pair", "--json", "--follow"])
    assert followed.output == printed.output
    for name, ending in (("bad", "WorkflowFailed"), ("nope", "WorkflowRejected")):
        ended = runner.invoke(app, ["start", name, "--wait"])
        assert ended.exit_code == 1, ended.output
        assert ended.stdout.strip().splitlines()[-1].startswith(ending + " {")
