"""JSON log lines name the trace and span they were written in, while tracing is on."""

from __future__ import annotations

import json
import logging

from kflow.observability import tracing
from kflow.observability.logging import JsonFormatter
from tests.tracing.conftest import Spans


def _line(message: str) -> dict[str, object]:
    record = logging.LogRecord("kflow.test", logging.INFO, __file__, 1, message, None, None)
    parsed: dict[str, object] = json.loads(JsonFormatter().format(record))
    return parsed


def test_log_lines_carry_the_current_trace_while_tracing_is_on(spans: Spans) -> None:
    assert "trace_id" not in _line("no span")
    with tracing.tracer().start_as_current_span("work") as span:
        line = _line("inside")
    context = span.get_span_context()
    assert line["trace_id"] == f"{context.trace_id:032x}"
    assert line["span_id"] == f"{context.span_id:016x}"


def test_log_lines_have_no_trace_fields_while_off() -> None:
    assert not tracing.on()
    assert "trace_id" not in _line("off")
