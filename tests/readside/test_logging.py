"""Structured logs: one JSON object per line with the context fields passed via ``extra``."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest
from typer.testing import CliRunner

from kflow.cli.main import _register, app
from kflow.observability.logging import JsonFormatter, configure_logging


@pytest.fixture
def restore_root_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for handler in list(root.handlers):
        root.removeHandler(handler)
    for handler in handlers:
        root.addHandler(handler)
    root.setLevel(level)


def test_json_lines_carry_level_logger_message_and_context(restore_root_logging: None) -> None:
    stream = io.StringIO()
    configure_logging("info", json=True, stream=stream)
    log = logging.getLogger("kflow.test")
    log.debug("not shown")
    log.info("step %s done", "a", extra={"workflow_id": "wf-1", "step_key": "wf-1/a", "seq": 7})
    try:
        raise ValueError("bad\nthing")
    except ValueError:
        log.exception("it broke")

    lines = stream.getvalue().splitlines()
    assert len(lines) == 2
    first, second = (json.loads(line) for line in lines)
    assert {k: first[k] for k in ("level", "logger", "message")} == {
        "level": "info",
        "logger": "kflow.test",
        "message": "step a done",
    }
    assert (first["workflow_id"], first["step_key"], first["seq"]) == ("wf-1", "wf-1/a", 7)
    assert first["time"].endswith("+00:00")
    assert "workflow_id" not in second
    assert second["level"] == "error" and "ValueError: bad\nthing" in second["exception"]


def test_text_format_and_reconfiguring_does_not_duplicate(restore_root_logging: None) -> None:
    stream = io.StringIO()
    configure_logging("warning", json=False, stream=stream)
    configure_logging("warning", json=False, stream=stream)
    logging.getLogger("kflow.test").warning("once")
    lines = stream.getvalue().splitlines()
    assert len(lines) == 1 and lines[0].endswith("WARNING kflow.test [MainThread] once")


def test_unknown_level_names_the_option() -> None:
    with pytest.raises(ValueError, match="--log-level 'loud'"):
        configure_logging("loud")


def test_formatter_keeps_unserialisable_context_as_text() -> None:
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "m", None, None)
    record.workflow_id = object()
    assert json.loads(JsonFormatter().format(record))["workflow_id"].startswith("<object")


def test_run_rejects_an_unknown_log_format() -> None:
    _register()
    result = CliRunner().invoke(app, ["run", "orchestrator", "--log-format", "xml"])
    assert result.exit_code == 2
    assert "error: --log-format must be json or text" in result.output
